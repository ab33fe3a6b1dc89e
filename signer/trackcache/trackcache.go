// Package trackcache is the signer's in-memory view of the catalogue
// (SPEC §4.3): what access checks and URL signing need, per track, plus
// the share-link and licence answers, held in ristretto caches and filled
// from the read pool.
//
//   - One query per id however many concurrent misses (singleflight).
//   - Unknown ids are cached negatively for a short TTL, so a flood of
//     bad ids reaches the database once per id per TTL.
//   - LISTEN playgate_tracks evicts changed ids on every replica. A fill
//     that raced with a notification is answered but not cached.
//   - When the listener loses its connection it may miss notifications,
//     so on reconnecting every entry is invalidated (an epoch bump: the
//     caches stay usable concurrently, which ristretto's Clear is not).
//   - With the database down, cached entries keep serving (even ones from
//     an older epoch: stale-if-error) and misses fail with ErrUnavailable.
package trackcache

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"
	"unique"
	"unsafe"

	"github.com/VictoriaMetrics/metrics"
	"github.com/cespare/xxhash/v2"
	"github.com/dgraph-io/ristretto/v2"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/singleflight"
)

// fillTimeout bounds one database query behind a miss.
const fillTimeout = 3 * time.Second

// ErrUnavailable means the answer is not cached and the database cannot
// be asked.
var ErrUnavailable = errors.New("trackcache: database unavailable")

// Visibility is a track's audience, as the signer checks it.
type Visibility uint8

// The visibilities.
const (
	Public Visibility = iota + 1
	Unlisted
	Private
)

// Track is an immutable snapshot of what the signer needs about a track.
// Never modify one obtained from the cache. A million of these are
// cached, so it holds only what the signer asks (whether a track is paid,
// not its price), its small fields share words, and it stays within Go's
// 112-byte size class (TestTrackSize).
type Track struct {
	ID         uuid.UUID
	Found      bool // false: unknown or deleted (a negative entry)
	Visibility Visibility
	Paid       bool // a price above zero: downloads need a licence

	// The original and the HLS package (paths.go): whether they exist,
	// the original's extension and backend (indexes into audioExts and
	// backends) and their hashes; odd holds whatever did not fit.
	hasAudio, hasHLS bool
	ext, backend     uint8
	// The package has the lossless tier (hls.LosslessPlaylist).
	HLSLossless bool

	epoch uint32 // the cache's epoch when loaded (InvalidateAll)

	// An owner has many tracks: they share one copy of the id.
	owner unique.Handle[string]
	Title string

	sha [32]byte
	pkg [8]byte
	odd *oddPaths

	seq uint64 // load sequence: keys this load's grant entries
}

// Owner is the owner's user id ("" in a negative entry).
func (t *Track) Owner() string {
	if t.owner == (unique.Handle[string]{}) {
		return ""
	}
	return t.owner.Value()
}

// Config sizes the caches.
type Config struct {
	// MaxBytes bounds the track cache (approximate bytes of entries).
	MaxBytes int64
	// NegativeTTL is how long an unknown id is remembered.
	NegativeTTL time.Duration
	// GrantTTL bounds how long a share or licence answer is kept; changes
	// invalidate it sooner through NOTIFY.
	GrantTTL time.Duration
	// ListenPing is how long the notification session may stay quiet
	// before it is asked to answer, within as long again (default 10s).
	// A session whose connection silently died (a NAT's timeout, a
	// failover without a reset) receives nothing and reports nothing: TCP
	// keepalive notices it only after minutes, while the cache serves
	// what NOTIFY should have evicted.
	ListenPing time.Duration
}

// HeapPerByte is about how much heap a full cache takes per byte of
// Config.MaxBytes: the entries, ristretto's maps and counters, the grants
// cache beside it, and the free slots that evicted entries leave among
// live ones. Measured with `go run ./bench memory -tracks 1200000`: the
// default 320 MiB held 1.14M tracks in 356 MiB of live heap and 437 MiB
// of heap spans in use, after a forced collection.
const HeapPerByte = 1.4

// FullHeap is about the heap a full cache of maxBytes takes.
func FullHeap(maxBytes int64) int64 { return int64(float64(maxBytes) * HeapPerByte) }

// FitsIn reports whether a full cache of maxBytes leaves the garbage
// collector a fifth of a memory limit to work in: above four fifths it
// runs almost without pause, and above the limit the process is killed.
func FitsIn(maxBytes, limit int64) bool { return FullHeap(maxBytes) <= limit/5*4 }

// Cache answers the signer's questions about tracks.
type Cache struct {
	cfg    Config
	read   *pgxpool.Pool
	log    *slog.Logger
	tracks *ristretto.Cache[uint64, *Track]
	grants *ristretto.Cache[uint64, *grant]
	fills  singleflight.Group

	seq   atomic.Uint64
	epoch atomic.Uint32
	// Invalidations per stripe of ids, so a fill can tell whether its id
	// was notified while its query ran.
	stripes [256]atomic.Uint64

	hits, misses, stale         *metrics.Counter
	grantHits, grantMisses      *metrics.Counter
	loadsFound, loadsNotFound   *metrics.Counter
	loadErrors, invalidations   *metrics.Counter
	evictions, grantEvictions   *metrics.Counter
	listenerReconnects, dropped *metrics.Counter
}

type grant struct {
	key   uint64 // the full hash: a cheap guard against bucket collisions
	seq   uint64
	ok    bool
	until time.Time
}

// New builds the caches. read is the pool fills query.
func New(cfg Config, read *pgxpool.Pool, log *slog.Logger, set *metrics.Set) (*Cache, error) {
	if cfg.MaxBytes <= 0 {
		return nil, errors.New("trackcache: MaxBytes must be positive")
	}
	if cfg.NegativeTTL <= 0 || cfg.GrantTTL <= 0 {
		return nil, errors.New("trackcache: NegativeTTL and GrantTTL must be positive")
	}
	if cfg.ListenPing <= 0 {
		cfg.ListenPing = 10 * time.Second
	}
	c := &Cache{
		cfg: cfg, read: read, log: log,
		hits:               set.NewCounter(`playgate_signer_cache_requests_total{cache="tracks",result="hit"}`),
		misses:             set.NewCounter(`playgate_signer_cache_requests_total{cache="tracks",result="miss"}`),
		stale:              set.NewCounter(`playgate_signer_cache_requests_total{cache="tracks",result="stale"}`),
		grantHits:          set.NewCounter(`playgate_signer_cache_requests_total{cache="grants",result="hit"}`),
		grantMisses:        set.NewCounter(`playgate_signer_cache_requests_total{cache="grants",result="miss"}`),
		loadsFound:         set.NewCounter(`playgate_signer_cache_loads_total{cache="tracks",result="found"}`),
		loadsNotFound:      set.NewCounter(`playgate_signer_cache_loads_total{cache="tracks",result="not_found"}`),
		loadErrors:         set.NewCounter(`playgate_signer_cache_loads_total{cache="tracks",result="error"}`),
		invalidations:      set.NewCounter(`playgate_signer_cache_invalidations_total`),
		evictions:          set.NewCounter(`playgate_signer_cache_evictions_total{cache="tracks"}`),
		grantEvictions:     set.NewCounter(`playgate_signer_cache_evictions_total{cache="grants"}`),
		listenerReconnects: set.NewCounter(`playgate_signer_cache_listener_reconnects_total`),
		dropped:            set.NewCounter(`playgate_signer_cache_dropped_sets_total`),
	}
	var err error
	c.tracks, err = ristretto.NewCache(&ristretto.Config[uint64, *Track]{
		// About ten counters per expected entry (ristretto's advice), and
		// no more: counters are memory too (~4.7 bytes each, measured).
		// An entry costs ~300 bytes (its cost(): 112 for the struct, the
		// title, 170 for ristretto's own). Ristretto rounds the counters
		// up to a power of two: for the default 320 MiB this asks 11.2M
		// and gets 16.8M.
		NumCounters:        max(cfg.MaxBytes/300*10, 1000),
		MaxCost:            cfg.MaxBytes,
		BufferItems:        64,
		IgnoreInternalCost: true,
		OnEvict:            func(*ristretto.Item[*Track]) { c.evictions.Inc() },
	})
	if err != nil {
		return nil, fmt.Errorf("trackcache: %w", err)
	}
	grantBytes := max(cfg.MaxBytes/8, 1<<20)
	c.grants, err = ristretto.NewCache(&ristretto.Config[uint64, *grant]{
		NumCounters: max(grantBytes/128*10, 1000), // a grant costs 96 + its subject

		MaxCost:            grantBytes,
		BufferItems:        64,
		IgnoreInternalCost: true,
		OnEvict:            func(*ristretto.Item[*grant]) { c.grantEvictions.Inc() },
	})
	if err != nil {
		return nil, fmt.Errorf("trackcache: %w", err)
	}
	set.NewGauge(`playgate_signer_cache_hit_ratio{cache="tracks"}`, func() float64 {
		h, m := float64(c.hits.Get()), float64(c.misses.Get())
		if h+m == 0 {
			return 0
		}
		return h / (h + m)
	})
	return c, nil
}

// Close stops the caches' goroutines.
func (c *Cache) Close() {
	c.tracks.Close()
	c.grants.Close()
}

// trackKey folds a UUID into ristretto's 64-bit key. The entry keeps the
// full id, checked on every hit, so a collision is a miss, never another
// track's answer.
func trackKey(id uuid.UUID) uint64 {
	return binary.LittleEndian.Uint64(id[:8]) ^ binary.LittleEndian.Uint64(id[8:])
}

// Track returns the track with id, from the cache or the database. A
// negative entry (Found false) is a valid answer.
func (c *Cache) Track(ctx context.Context, id uuid.UUID) (*Track, error) {
	k := trackKey(id)
	cached, ok := c.tracks.Get(k)
	if ok && cached.ID == id && cached.epoch == c.epoch.Load() {
		c.hits.Inc()
		return cached, nil
	}
	c.misses.Inc()
	v, err, _ := c.fills.Do(id.String(), func() (any, error) { return c.fill(ctx, id, k) })
	if err != nil {
		if ok && cached.ID == id {
			// The database is down and this entry predates the last
			// reconnect: serve it rather than nothing.
			c.stale.Inc()
			return cached, nil
		}
		return nil, err
	}
	return v.(*Track), nil
}

func (c *Cache) fill(ctx context.Context, id uuid.UUID, k uint64) (*Track, error) {
	stripe := &c.stripes[k%uint64(len(c.stripes))]
	before := stripe.Load()
	epoch := c.epoch.Load()
	// Every waiter shares this fill: it must not end with the first
	// caller's request.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fillTimeout)
	defer cancel()
	t, err := c.load(ctx, id)
	if err != nil {
		c.loadErrors.Inc()
		c.log.Warn("cannot load track", "track", id, "err", err)
		return nil, ErrUnavailable
	}
	t.seq = c.seq.Add(1)
	t.epoch = epoch
	if stripe.Load() != before || c.epoch.Load() != epoch {
		return t, nil // changed while loading: answer, but do not keep
	}
	var stored bool
	if t.Found {
		c.loadsFound.Inc()
		stored = c.tracks.Set(k, t, t.cost())
	} else {
		c.loadsNotFound.Inc()
		stored = c.tracks.SetWithTTL(k, t, t.cost(), c.cfg.NegativeTTL)
	}
	if !stored {
		c.dropped.Inc() // ristretto may drop a set under contention
	}
	// Make the entry visible before the next request for it asks.
	c.tracks.Wait()
	return t, nil
}

// ristrettoEntryBytes is what ristretto itself holds per entry: its
// store's map slot (key, conflict hash, value, expiry) and its policy's
// cost map, with the maps' free slots. Measured with a heap profile of
// `go run ./bench memory -tracks 1000000 -memprofile`: 125 and 38 MB.
const ristrettoEntryBytes = 170

// cost is the heap an entry takes, so that Config.MaxBytes bounds what
// the entries take.
func (t *Track) cost() int64 {
	// The owner's id is shared with the owner's other tracks: not counted.
	c := int64(unsafe.Sizeof(*t)) + int64(len(t.Title)) + ristrettoEntryBytes
	if t.odd != nil {
		c += int64(unsafe.Sizeof(*t.odd)) + int64(len(t.odd.objectPath)+len(t.odd.hlsDir)+len(t.odd.backend))
	}
	return c
}

func (c *Cache) load(ctx context.Context, id uuid.UUID) (*Track, error) {
	var (
		owner, visibility, title, hlsStatus string
		objectKey, backend, hlsPrefix       *string
		price                               int64
		lossless                            bool
		deleted                             *time.Time
	)
	err := c.read.QueryRow(ctx, `SELECT owner_id, visibility, price_cents, object_key, storage_backend,
			hls_status, hls_prefix, hls_lossless, title, deleted_at
		FROM tracks WHERE id = $1`, id).
		Scan(&owner, &visibility, &price, &objectKey, &backend, &hlsStatus, &hlsPrefix, &lossless, &title, &deleted)
	if errors.Is(err, pgx.ErrNoRows) {
		return &Track{ID: id}, nil
	}
	if err != nil {
		return nil, err
	}
	if deleted != nil {
		return &Track{ID: id}, nil
	}
	t := &Track{ID: id, Found: true, owner: unique.Make(owner), Paid: price > 0, Title: title}
	switch visibility {
	case "public":
		t.Visibility = Public
	case "unlisted":
		t.Visibility = Unlisted
	default:
		t.Visibility = Private // fail closed on anything unexpected
	}
	if objectKey != nil && backend != nil {
		t.SetObject(*objectKey, *backend)
	}
	if hlsStatus == "ready" && hlsPrefix != nil {
		t.SetHLS(*hlsPrefix)
		t.HLSLossless = lossless
	}
	return t, nil
}

// grantKey hashes a (load, kind, subject) triple.
func grantKey(seq uint64, kind byte, subject []byte) uint64 {
	var b [9]byte
	binary.LittleEndian.PutUint64(b[:8], seq)
	b[8] = kind
	d := xxhash.New()
	_, _ = d.Write(b[:])
	_, _ = d.Write(subject)
	return d.Sum64()
}

// ShareOpens reports whether a share token (given by the SHA-256 of its
// text) opens t now.
func (c *Cache) ShareOpens(ctx context.Context, t *Track, tokenHash []byte) (bool, error) {
	return c.grant(ctx, t, 's', tokenHash, func(ctx context.Context) (bool, time.Time, error) {
		var expires time.Time
		err := c.read.QueryRow(ctx, `SELECT expires_at FROM share_links
			WHERE track_id = $1 AND token_hash = $2 AND revoked_at IS NULL AND expires_at > now()`,
			t.ID, tokenHash).Scan(&expires)
		if errors.Is(err, pgx.ErrNoRows) {
			return false, time.Time{}, nil
		}
		return err == nil, expires, err
	})
}

// Licensed reports whether user holds an active licence for t.
func (c *Cache) Licensed(ctx context.Context, t *Track, user string) (bool, error) {
	return c.grant(ctx, t, 'l', []byte(user), func(ctx context.Context) (bool, time.Time, error) {
		var ok bool
		err := c.read.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM licenses
			WHERE track_id = $1 AND user_id = $2 AND revoked_at IS NULL)`, t.ID, user).Scan(&ok)
		return ok, time.Time{}, err
	})
}

func (c *Cache) grant(ctx context.Context, t *Track, kind byte, subject []byte,
	load func(context.Context) (bool, time.Time, error)) (bool, error) {
	k := grantKey(t.seq, kind, subject)
	now := time.Now()
	if g, ok := c.grants.Get(k); ok && g.key == k && g.seq == t.seq && (g.until.IsZero() || now.Before(g.until)) {
		c.grantHits.Inc()
		return g.ok, nil
	}
	c.grantMisses.Inc()
	v, err, _ := c.fills.Do(fmt.Sprintf("g%d/%c/%x", t.seq, kind, subject), func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fillTimeout)
		defer cancel()
		ok, until, err := load(ctx)
		if err != nil {
			c.log.Warn("cannot load grant", "track", t.ID, "err", err)
			return false, ErrUnavailable
		}
		g := &grant{key: k, seq: t.seq, ok: ok, until: until}
		ttl := c.cfg.GrantTTL
		if ok && !until.IsZero() && until.Sub(now) < ttl {
			ttl = until.Sub(now)
		}
		if ttl > 0 {
			c.grants.SetWithTTL(k, g, 96+int64(len(subject)), ttl)
			c.grants.Wait()
		}
		return ok, nil
	})
	if err != nil {
		return false, err
	}
	return v.(bool), nil
}

// Invalidate forgets a track and, through its load sequence, every share
// and licence answer about it.
func (c *Cache) Invalidate(id uuid.UUID) {
	k := trackKey(id)
	c.stripes[k%uint64(len(c.stripes))].Add(1)
	c.tracks.Del(k)
	c.invalidations.Inc()
}

// InvalidateAll makes every entry a miss (kept only as a stale answer
// for when the database is down).
func (c *Cache) InvalidateAll() {
	c.epoch.Add(1)
}

// Listen keeps a LISTEN playgate_tracks session on the primary (NOTIFY is
// delivered where the write happened, never on a replica) and evicts each
// notified id. It reconnects with backoff when the session is lost and
// invalidates everything once it is back, since notifications sent in
// between are gone. ready, if not nil, is closed once listening. Listen
// returns when ctx ends.
func (c *Cache) Listen(ctx context.Context, primaryURL string, ready chan<- struct{}) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := c.listenOnce(ctx, primaryURL, &ready)
		if ctx.Err() != nil {
			return
		}
		c.listenerReconnects.Inc()
		c.log.Warn("track notifications lost; reconnecting", "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (c *Cache) listenOnce(ctx context.Context, url string, ready *chan<- struct{}) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN playgate_tracks"); err != nil {
		return err
	}
	// Anything cached before this point may have missed a notification.
	c.InvalidateAll()
	if *ready != nil {
		close(*ready)
		*ready = nil
	}
	for {
		wait, cancel := context.WithTimeout(ctx, c.cfg.ListenPing)
		n, err := conn.WaitForNotification(wait)
		cancel()
		if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			// Quiet: a timeout leaves the session usable (pgconn), so
			// ask it to answer.
			ping, cancel := context.WithTimeout(ctx, c.cfg.ListenPing)
			err = conn.Ping(ping)
			cancel()
			if err != nil {
				return fmt.Errorf("the notification session does not answer: %w", err)
			}
			continue
		}
		if err != nil {
			return err
		}
		id, err := uuid.Parse(n.Payload)
		if err != nil {
			c.log.Error("bad notification payload", "payload", n.Payload)
			continue
		}
		c.Invalidate(id)
	}
}

// Ready is the signer's readiness check. A signer whose cache has served
// keeps answering from it while the database is away (stale-if-error), so
// it stays ready then: taking every signer out of rotation during a
// database blip would turn a degraded catalogue into an outage. A cold
// signer with no database is not ready.
func (c *Cache) Ready(db *pgxpool.Pool) func(context.Context) error {
	return func(ctx context.Context) error {
		err := db.Ping(ctx)
		if err != nil && c.hits.Get() == 0 {
			return err
		}
		return nil
	}
}
