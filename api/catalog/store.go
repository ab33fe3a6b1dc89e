package catalog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Store reads and writes the catalogue. Writes, and reads that must see
// their own writes, go to the primary; other reads go to the read pool,
// which may be a replica (DATABASE_READ_URL) or the primary itself.
type Store struct {
	pool    *pgxpool.Pool // the primary's (readiness)
	primary conn
	read    conn
}

// conn runs statements: a pool, or, in the Store WithAudioLock hands
// its function, the lock's transaction (whose Begin makes a savepoint).
type conn interface {
	Begin(ctx context.Context) (pgx.Tx, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// NewStore builds a store. read may be nil to read from the primary.
func NewStore(primary, read *pgxpool.Pool) *Store {
	if read == nil {
		read = primary
	}
	return &Store{pool: primary, primary: primary, read: read}
}

// Ping checks that the primary answers (readiness).
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

const trackColumns = `id, owner_id, title, artist, duration_ms, visibility, price_cents,
	storage_backend, object_key, content_type, size_bytes, sha256,
	hls_status, hls_prefix, hls_error, hls_progress, hls_lossless, version, created_at, updated_at, deleted_at`

func scanTrack(row pgx.Row) (Track, error) {
	var t Track
	err := row.Scan(&t.ID, &t.OwnerID, &t.Title, &t.Artist, &t.DurationMS, &t.Visibility, &t.PriceCents,
		&t.StorageBackend, &t.ObjectKey, &t.ContentType, &t.SizeBytes, &t.SHA256,
		&t.HLSStatus, &t.HLSPrefix, &t.HLSError, &t.HLSProgress, &t.HLSLossless, &t.Version, &t.CreatedAt, &t.UpdatedAt, &t.DeletedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Track{}, ErrNotFound
	}
	return t, err
}

// CreateTrack inserts a track owned by owner.
func (s *Store) CreateTrack(ctx context.Context, owner string, n NewTrack) (Track, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return Track{}, fmt.Errorf("cannot make a track id: %w", err)
	}
	t, err := scanTrack(s.primary.QueryRow(ctx, `
		INSERT INTO tracks (id, owner_id, title, artist, visibility, price_cents)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING `+trackColumns,
		id, owner, n.Title, n.Artist, n.Visibility, n.PriceCents))
	if err != nil {
		return Track{}, fmt.Errorf("cannot create track: %w", err)
	}
	return t, nil
}

// Track returns a live (not deleted) track from the read pool.
func (s *Store) Track(ctx context.Context, id uuid.UUID) (Track, error) {
	return s.track(ctx, s.read, id)
}

// TrackForUpdate reads a live track from the primary, for a write that
// follows.
func (s *Store) TrackForUpdate(ctx context.Context, id uuid.UUID) (Track, error) {
	return s.track(ctx, s.primary, id)
}

func (s *Store) track(ctx context.Context, db conn, id uuid.UUID) (Track, error) {
	t, err := scanTrack(db.QueryRow(ctx,
		`SELECT `+trackColumns+` FROM tracks WHERE id = $1 AND deleted_at IS NULL`, id))
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Track{}, fmt.Errorf("cannot load track %s: %w", id, err)
	}
	return t, err
}

// Page is one page of a keyset-paginated listing.
type Page struct {
	Tracks []Track
	// Next is the cursor for the following page; uuid.Nil at the end.
	Next uuid.UUID
}

// ListByOwner lists owner's live tracks, newest first, after cursor
// (uuid.Nil: from the start).
func (s *Store) ListByOwner(ctx context.Context, owner string, cursor uuid.UUID, limit int) (Page, error) {
	return s.list(ctx, `owner_id = $3`, cursor, limit, owner)
}

// ListPublic lists live public tracks, newest first.
func (s *Store) ListPublic(ctx context.Context, cursor uuid.UUID, limit int) (Page, error) {
	return s.list(ctx, `visibility = 'public'`, cursor, limit)
}

// list runs one page of a listing; filter may use $3 onwards for args.
func (s *Store) list(ctx context.Context, filter string, cursor uuid.UUID, limit int, args ...any) (Page, error) {
	// Ids are UUIDv7, so id order is creation order and the id of the
	// last row is a stable cursor: no OFFSET scans, no skipped rows when
	// tracks are added between pages.
	var after any
	if cursor != uuid.Nil {
		after = cursor
	}
	rows, err := s.read.Query(ctx, `SELECT `+trackColumns+` FROM tracks
		WHERE deleted_at IS NULL AND `+filter+` AND ($1::uuid IS NULL OR id < $1)
		ORDER BY id DESC LIMIT $2`, append([]any{after, limit + 1}, args...)...)
	if err != nil {
		return Page{}, fmt.Errorf("cannot list tracks: %w", err)
	}
	tracks, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Track, error) { return scanTrack(r) })
	if err != nil {
		return Page{}, fmt.Errorf("cannot list tracks: %w", err)
	}
	var p Page
	if len(tracks) > limit {
		tracks = tracks[:limit]
		p.Next = tracks[limit-1].ID
	}
	p.Tracks = tracks
	return p, nil
}

// Purge queues a CDN purge of paths inside the transaction of the write
// that makes them unreachable (SPEC §4.6): the write and its purge commit
// together, so no crash between the two can lose the purge.
type Purge func(ctx context.Context, tx pgx.Tx, paths []string) error

// UpdateTrack applies patch. With ifVersion set, the update happens only
// if the row is still at that version (ErrVersionMismatch otherwise). A
// track it turns private is purged with purge (nil: none).
func (s *Store) UpdateTrack(ctx context.Context, id uuid.UUID, patch TrackPatch, ifVersion *int64, purge Purge) (Track, error) {
	var t Track
	err := pgx.BeginFunc(ctx, s.primary, func(tx pgx.Tx) error {
		var was Visibility
		err := tx.QueryRow(ctx, `SELECT visibility FROM tracks WHERE id = $1 AND deleted_at IS NULL FOR UPDATE`, id).Scan(&was)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		t, err = scanTrack(tx.QueryRow(ctx, `
			UPDATE tracks SET
				title = coalesce($2, title),
				artist = coalesce($3, artist),
				visibility = coalesce($4, visibility),
				price_cents = coalesce($5, price_cents)
			WHERE id = $1 AND ($6::bigint IS NULL OR version = $6)
			RETURNING `+trackColumns,
			id, patch.Title, patch.Artist, patch.Visibility, patch.PriceCents, ifVersion))
		if err != nil {
			return err
		}
		if purge != nil && was != Private && t.Visibility == Private {
			// Cached copies at the edge must not outlive the change.
			return purge(ctx, tx, t.CDNPaths())
		}
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		return Track{}, s.whyNoRow(ctx, id)
	}
	if err != nil {
		return Track{}, fmt.Errorf("cannot update track %s: %w", id, err)
	}
	return t, nil
}

// whyNoRow tells a conditional update's "no row" apart: gone, or moved on.
func (s *Store) whyNoRow(ctx context.Context, id uuid.UUID) error {
	if _, err := s.TrackForUpdate(ctx, id); err != nil {
		return err
	}
	return ErrVersionMismatch
}

// Enqueue queues HLS packaging of a track's new audio inside the
// transaction that records it, so a job exists exactly when the row says
// "queued".
type Enqueue func(ctx context.Context, tx pgx.Tx, track uuid.UUID, sourceSHA256 string) error

// SetAudio records a stored original on a track whose audio is still
// prevSHA256 ("" for none), queues HLS packaging with enqueue (nil: no
// packaging), and purges an original it replaces with purge (nil: none).
// It returns ErrVersionMismatch if the audio changed since the upload
// began; the caller then removes the object it stored. The same bytes
// uploaded again keep the track's HLS state and package.
func (s *Store) SetAudio(ctx context.Context, id uuid.UUID, prevSHA256 string, a Audio, enqueue Enqueue, purge Purge) (Track, error) {
	var t Track
	err := pgx.BeginFunc(ctx, s.primary, func(tx pgx.Tx) error {
		status := HLSNone
		if enqueue != nil {
			status = HLSQueued
		}
		var oldKey, oldBackend *string
		err := tx.QueryRow(ctx, `SELECT object_key, storage_backend FROM tracks WHERE id = $1 FOR UPDATE`, id).
			Scan(&oldKey, &oldBackend)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		t, err = scanTrack(tx.QueryRow(ctx, `
			UPDATE tracks SET storage_backend = $3, object_key = $4, content_type = $5, size_bytes = $6, sha256 = $7,
				duration_ms = CASE WHEN sha256 IS NOT DISTINCT FROM $7 THEN duration_ms END,
				hls_status = CASE WHEN sha256 IS NOT DISTINCT FROM $7 AND hls_status <> 'failed' THEN hls_status ELSE $8 END,
				hls_error = CASE WHEN sha256 IS NOT DISTINCT FROM $7 AND hls_status <> 'failed' THEN hls_error END,
				hls_progress = CASE WHEN sha256 IS NOT DISTINCT FROM $7 AND hls_status <> 'failed' THEN hls_progress ELSE 0 END
			WHERE id = $1 AND deleted_at IS NULL AND coalesce(sha256, '') = $2
			RETURNING `+trackColumns,
			id, prevSHA256, a.Backend, a.Key, a.ContentType, a.Size, a.SHA256, status))
		if err != nil {
			return err
		}
		if t.HLSStatus == HLSQueued && enqueue != nil {
			if err := enqueue(ctx, tx, id, a.SHA256); err != nil {
				return err
			}
		}
		if purge != nil && oldKey != nil && (*oldKey != a.Key || *oldBackend != a.Backend) {
			// New audio replaces the old: the edge forgets it.
			return purge(ctx, tx, []string{*oldKey})
		}
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		return Track{}, s.whyNoRow(ctx, id)
	}
	if err != nil {
		return Track{}, fmt.Errorf("cannot record audio of track %s: %w", id, err)
	}
	return t, nil
}

// The packager's state changes apply only while the track is live and
// still has the audio the job was made for (ErrNotFound otherwise: the
// job is obsolete).

// StartHLS marks packaging of sourceSHA256 as under way.
func (s *Store) StartHLS(ctx context.Context, id uuid.UUID, sourceSHA256 string) (Track, error) {
	return s.hlsUpdate(ctx, id, sourceSHA256, `hls_status = 'processing', hls_progress = 0, hls_error = NULL`)
}

// HLSProgress records the percentage done.
func (s *Store) HLSProgress(ctx context.Context, id uuid.UUID, sourceSHA256 string, percent int) error {
	_, err := s.hlsUpdate(ctx, id, sourceSHA256, `hls_progress = $3`, min(max(percent, 0), 100))
	return err
}

// FinishHLS makes a stored package the track's, with its duration and
// whether it has the lossless tier, and returns the package it replaces
// ("" for none).
func (s *Store) FinishHLS(ctx context.Context, id uuid.UUID, sourceSHA256, prefix string, durationMS int64, lossless bool) (string, error) {
	var old *string
	err := s.WithPackageLock(ctx, prefix, func(locked *Store) error {
		return locked.primary.QueryRow(ctx, `
			UPDATE tracks t SET hls_status = 'ready', hls_prefix = $3, hls_progress = 100, hls_error = NULL, duration_ms = $4,
				hls_lossless = $5
			FROM (SELECT id, hls_prefix FROM tracks WHERE id = $1 FOR UPDATE) prev
			WHERE t.id = prev.id AND t.deleted_at IS NULL AND t.sha256 = $2
			RETURNING prev.hls_prefix`, id, sourceSHA256, prefix, durationMS, lossless).Scan(&old)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("cannot finish packaging of track %s: %w", id, err)
	}
	if old == nil || *old == prefix {
		return "", nil
	}
	return *old, nil
}

// FailHLS records why packaging failed.
func (s *Store) FailHLS(ctx context.Context, id uuid.UUID, sourceSHA256, reason string) error {
	_, err := s.hlsUpdate(ctx, id, sourceSHA256, `hls_status = 'failed', hls_error = $3`, reason)
	return err
}

// RequeueHLS shows a package that will be tried again as queued, with
// the error that ended the last attempt ("" when it was only interrupted).
func (s *Store) RequeueHLS(ctx context.Context, id uuid.UUID, sourceSHA256, lastError string) error {
	var reason *string
	if lastError != "" {
		reason = &lastError
	}
	_, err := s.hlsUpdate(ctx, id, sourceSHA256, `hls_status = 'queued', hls_progress = 0, hls_error = $3`, reason)
	return err
}

func (s *Store) hlsUpdate(ctx context.Context, id uuid.UUID, sourceSHA256, set string, args ...any) (Track, error) {
	t, err := scanTrack(s.primary.QueryRow(ctx, `UPDATE tracks SET `+set+`
		WHERE id = $1 AND deleted_at IS NULL AND sha256 = $2 RETURNING `+trackColumns,
		append([]any{id, sourceSHA256}, args...)...))
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Track{}, fmt.Errorf("cannot update packaging of track %s: %w", id, err)
	}
	return t, err
}

// Packaging is a live track's audio and where its packaging stands: a
// ready package (Prefix), or none at all (HLS was off at its upload).
type Packaging struct {
	TrackID uuid.UUID
	SHA256  string
	Status  HLSStatus // HLSReady or HLSNone
	Prefix  string    // "hls/{track}/{package}" when ready
}

// Packagings returns up to limit live tracks with audio whose packaging
// is ready or was never asked for, in id order, after the track id after
// (uuid.Nil: from the first).
func (s *Store) Packagings(ctx context.Context, after uuid.UUID, limit int) ([]Packaging, error) {
	rows, err := s.primary.Query(ctx, `SELECT id, sha256, hls_status, coalesce(hls_prefix, '') FROM tracks
		WHERE id > $1 AND deleted_at IS NULL AND sha256 IS NOT NULL AND hls_status IN ('ready', 'none')
		ORDER BY id LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("cannot list packagings: %w", err)
	}
	var out []Packaging
	var p Packaging
	_, err = pgx.ForEachRow(rows, []any{&p.TrackID, &p.SHA256, &p.Status, &p.Prefix}, func() error {
		out = append(out, p)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cannot list packagings: %w", err)
	}
	return out, nil
}

// QueueHLS queues the packaging of a track that has none (HLS was off
// when its audio was stored), as SetAudio would have: the track turns
// queued in the transaction that enqueues the job. A track that changed
// since (new audio, deleted, already queued) is left alone: ErrNotFound.
func (s *Store) QueueHLS(ctx context.Context, id uuid.UUID, sourceSHA256 string, enqueue Enqueue) error {
	return pgx.BeginFunc(ctx, s.primary, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE tracks SET hls_status = 'queued', hls_progress = 0, hls_error = NULL
			WHERE id = $1 AND sha256 = $2 AND deleted_at IS NULL AND hls_status = 'none'`, id, sourceSHA256)
		if err != nil {
			return fmt.Errorf("cannot queue packaging of track %s: %w", id, err)
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		return enqueue(ctx, tx, id, sourceSHA256)
	})
}

// Objects is what a live track names in storage.
type Objects struct {
	Backend   string // where both are
	Original  string // "" before the first upload
	HLSPrefix string // "" until a package is ready
}

// LiveObjects returns what each of ids names in storage, for the tracks
// that are not deleted.
func (s *Store) LiveObjects(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]Objects, error) {
	rows, err := s.primary.Query(ctx, `SELECT id, coalesce(storage_backend, ''), coalesce(object_key, ''), coalesce(hls_prefix, '')
		FROM tracks WHERE id = ANY($1) AND deleted_at IS NULL`, ids)
	if err != nil {
		return nil, fmt.Errorf("cannot read tracks' objects: %w", err)
	}
	out := make(map[uuid.UUID]Objects, len(ids))
	var id uuid.UUID
	var o Objects
	_, err = pgx.ForEachRow(rows, []any{&id, &o.Backend, &o.Original, &o.HLSPrefix}, func() error {
		out[id] = o
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cannot read tracks' objects: %w", err)
	}
	return out, nil
}

// DeleteTrack soft-deletes a track, revokes its share links and purges
// it with purge (nil: none), returning the row as it was (the caller
// removes its objects).
func (s *Store) DeleteTrack(ctx context.Context, id uuid.UUID, purge Purge) (Track, error) {
	var t Track
	err := pgx.BeginFunc(ctx, s.primary, func(tx pgx.Tx) error {
		var err error
		t, err = scanTrack(tx.QueryRow(ctx, `UPDATE tracks SET deleted_at = now()
			WHERE id = $1 AND deleted_at IS NULL RETURNING `+trackColumns, id))
		if err != nil {
			return err
		}
		if _, err = tx.Exec(ctx, `UPDATE share_links SET revoked_at = now()
			WHERE track_id = $1 AND revoked_at IS NULL`, id); err != nil {
			return err
		}
		if purge != nil {
			return purge(ctx, tx, t.CDNPaths())
		}
		return nil
	})
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Track{}, fmt.Errorf("cannot delete track %s: %w", id, err)
	}
	return t, err
}

// CreateShare stores a share link by the hash of its token.
func (s *Store) CreateShare(ctx context.Context, track uuid.UUID, createdBy string, tokenHash []byte, expires time.Time) (Share, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return Share{}, fmt.Errorf("cannot make a share id: %w", err)
	}
	sh := Share{ID: id, TrackID: track, CreatedBy: createdBy, ExpiresAt: expires}
	err = s.primary.QueryRow(ctx, `
		INSERT INTO share_links (id, track_id, token_hash, created_by, expires_at)
		SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM tracks WHERE id = $2 AND deleted_at IS NULL)
		RETURNING created_at, expires_at`,
		id, track, tokenHash, createdBy, expires).Scan(&sh.CreatedAt, &sh.ExpiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Share{}, ErrNotFound
	}
	if err != nil {
		return Share{}, fmt.Errorf("cannot create share link: %w", err)
	}
	return sh, nil
}

// ShareOwner returns a share link with the owner of its (live) track.
func (s *Store) ShareOwner(ctx context.Context, id uuid.UUID) (Share, string, error) {
	var sh Share
	var owner string
	err := s.primary.QueryRow(ctx, `
		SELECT s.id, s.track_id, s.created_by, s.created_at, s.expires_at, s.revoked_at, t.owner_id
		FROM share_links s JOIN tracks t ON t.id = s.track_id
		WHERE s.id = $1 AND t.deleted_at IS NULL`, id).
		Scan(&sh.ID, &sh.TrackID, &sh.CreatedBy, &sh.CreatedAt, &sh.ExpiresAt, &sh.RevokedAt, &owner)
	if errors.Is(err, pgx.ErrNoRows) {
		return Share{}, "", ErrNotFound
	}
	if err != nil {
		return Share{}, "", fmt.Errorf("cannot load share link %s: %w", id, err)
	}
	return sh, owner, nil
}

// RevokeShare revokes a share link; revoking twice keeps the first time.
func (s *Store) RevokeShare(ctx context.Context, id uuid.UUID) error {
	_, err := s.primary.Exec(ctx, `UPDATE share_links SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("cannot revoke share link %s: %w", id, err)
	}
	return nil
}

// GrantLicense grants (or re-grants) user a licence for a live track.
func (s *Store) GrantLicense(ctx context.Context, track uuid.UUID, user, source string) (License, error) {
	l := License{UserID: user, TrackID: track, Source: source}
	err := s.primary.QueryRow(ctx, `
		INSERT INTO licenses (user_id, track_id, source)
		SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM tracks WHERE id = $2 AND deleted_at IS NULL)
		ON CONFLICT (user_id, track_id) DO UPDATE
			SET granted_at = now(), source = EXCLUDED.source, revoked_at = NULL
		RETURNING granted_at`, user, track, source).Scan(&l.GrantedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return License{}, ErrNotFound
	}
	if err != nil {
		return License{}, fmt.Errorf("cannot grant licence: %w", err)
	}
	return l, nil
}

// RevokeLicense revokes user's licence for track; ErrNotFound if none is
// active.
func (s *Store) RevokeLicense(ctx context.Context, track uuid.UUID, user string) error {
	tag, err := s.primary.Exec(ctx, `UPDATE licenses SET revoked_at = now()
		WHERE track_id = $1 AND user_id = $2 AND revoked_at IS NULL`, track, user)
	if err != nil {
		return fmt.Errorf("cannot revoke licence: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// ShareOpens reports whether the share token with tokenHash opens track
// now: not revoked, not expired. Reads the read pool.
func (s *Store) ShareOpens(ctx context.Context, track uuid.UUID, tokenHash []byte) (bool, error) {
	var ok bool
	err := s.read.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM share_links
		WHERE track_id = $1 AND token_hash = $2 AND revoked_at IS NULL AND expires_at > now())`,
		track, tokenHash).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("cannot check share link: %w", err)
	}
	return ok, nil
}

// WithPackageLock runs fn while holding a lock on one package prefix
// ("hls/{track}/{package}"), with a Store on the lock's transaction.
// Package ids are deterministic, so a replaced package can be made again
// (the old audio or the old settings back) while its collection is due:
// the collector deletes under this lock, and a job making the package
// takes it to stop the collection before it uploads, and to make the
// package the track's (FinishHLS).
func (s *Store) WithPackageLock(ctx context.Context, prefix string, fn func(locked *Store) error) error {
	return s.withLock(ctx, "hls-package:"+prefix, fn)
}

// WithAudioLock runs fn while holding a lock on the track's audio, so that
// one upload at a time promotes its object and records it. fn gets a
// Store on the lock's transaction, committed when fn returns nil: what
// it writes becomes visible with the lock's release, and it needs no
// second connection, which with uploads finishing together would wait
// for a pool their locks hold.
func (s *Store) WithAudioLock(ctx context.Context, id uuid.UUID, fn func(locked *Store) error) error {
	return s.withLock(ctx, "audio:"+id.String(), fn)
}

// withLock runs fn in a transaction holding the advisory lock named key,
// with a Store on that transaction.
func (s *Store) withLock(ctx context.Context, key string, fn func(locked *Store) error) error {
	return pgx.BeginFunc(ctx, s.primary, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, key); err != nil {
			return fmt.Errorf("cannot take the lock %s: %w", key, err)
		}
		return fn(&Store{pool: s.pool, primary: tx, read: tx})
	})
}
