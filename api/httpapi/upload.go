package httpapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"

	"github.com/google/uuid"
	"github.com/valyala/fasthttp"

	"github.com/playgate/playgate/api/catalog"
	"github.com/playgate/playgate/internal/problem"
	"github.com/playgate/playgate/origin/storage"
)

var (
	errUploadTooLarge = errors.New("upload too large")
	errStorage        = errors.New("storage unavailable")
)

// meteredReader hashes and counts what passes through it, fails once
// more than max bytes have come, and remembers a failure to read the
// request (the client's fault, unlike a failure to write to storage).
// A body that ends before its Content-Length (a client that went away)
// is an error, never a short upload that looks complete.
type meteredReader struct {
	r        io.Reader
	hash     hash.Hash
	n        int64
	max      int64
	expected int64 // Content-Length, or -1 when chunked
	readErr  error
}

func (m *meteredReader) Read(p []byte) (int, error) {
	n, err := m.r.Read(p)
	m.n += int64(n)
	m.hash.Write(p[:n])
	if m.n > m.max {
		return n, errUploadTooLarge
	}
	if err == io.EOF && m.expected >= 0 && m.n != m.expected {
		err = io.ErrUnexpectedEOF
	}
	if err != nil && err != io.EOF {
		m.readErr = err
	}
	return n, err
}

// putAudio streams the request body into storage (SPEC §3): the type is
// sniffed from the first bytes, the SHA-256 and size are computed while
// the bytes flow to a temporary key, which is then promoted to the
// content-addressed key, and only then is the row updated. Whatever fails,
// nothing is left behind: no row points at missing bytes, and no object
// is left without a row.
func (s *Server) putAudio(c context.Context, ctx *fasthttp.RequestCtx) {
	caller := s.requireCaller(ctx)
	if caller == nil {
		return
	}
	id, ok := pathID(ctx, "id")
	if !ok {
		return
	}
	if n := ctx.Request.Header.ContentLength(); int64(n) > s.cfg.UploadMaxBytes {
		s.tooLarge(ctx)
		return
	}
	t, ok := s.ownedTrack(c, ctx, caller, id)
	if !ok {
		return
	}
	select {
	case s.uploadSlots <- struct{}{}:
		defer func() { <-s.uploadSlots }()
	default:
		// Refused before a byte of the body is read: the client retries
		// later rather than the process running out of memory.
		s.uploadsRefused.Inc()
		ctx.Response.Header.Set("Retry-After", "10")
		problem.Write(ctx, fasthttp.StatusServiceUnavailable, problem.TooManyUploads,
			fmt.Sprintf("%d uploads are in progress, the most this server takes at once; retry later", cap(s.uploadSlots)))
		return
	}

	body := bodyReader(ctx)
	head, err := readHead(body)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		problem.Write(ctx, fasthttp.StatusBadRequest, problem.InvalidBody, "the upload was interrupted")
		return
	}
	if len(head) == 0 {
		problem.Write(ctx, fasthttp.StatusBadRequest, problem.InvalidBody, "the body is empty: send the audio file")
		return
	}
	format, ok := catalog.Sniff(head)
	if !ok {
		problem.Write(ctx, fasthttp.StatusUnsupportedMediaType, problem.UnsupportedMediaType,
			"not a supported audio file: send MP3, FLAC, WAV, Ogg (Vorbis/Opus), M4A or AAC")
		return
	}

	// A client that goes away shows up as a read error from the body.
	expected := int64(ctx.Request.Header.ContentLength()) // -1 chunked, -2 none
	if expected < 0 {
		expected = -1
	}
	src := &meteredReader{r: io.MultiReader(bytes.NewReader(head), body), hash: sha256.New(), max: s.cfg.UploadMaxBytes, expected: expected}
	tmpKey := catalog.UploadKey(id, randomHex(16))
	if _, err := s.write.Put(c, tmpKey, src, format.ContentType); err != nil {
		switch {
		case errors.Is(err, errUploadTooLarge):
			s.tooLarge(ctx)
		case c.Err() != nil:
			problem.Write(ctx, fasthttp.StatusServiceUnavailable, problem.Unavailable, "the upload did not finish in time")
		case src.readErr != nil:
			problem.Write(ctx, fasthttp.StatusBadRequest, problem.InvalidBody, "the upload was interrupted")
		default:
			s.log.Error("cannot store upload", "track", id, "backend", s.write.Name(), "err", err)
			problem.Write(ctx, fasthttp.StatusServiceUnavailable, problem.Unavailable, "storage is unavailable; retry")
		}
		return
	}
	s.uploadBytes.Add(int(src.n))

	sum := hex.EncodeToString(src.hash.Sum(nil))
	audio := catalog.Audio{
		Backend:     s.write.Name(),
		Key:         catalog.OriginalKey(id, sum, format.Ext),
		ContentType: format.ContentType,
		Size:        src.n,
		SHA256:      sum,
	}
	// The committing steps run to completion even if the client goes away
	// now: a half-done promotion would leave exactly the orphan this
	// ordering exists to prevent.
	commit, cancelCommit := context.WithTimeout(context.WithoutCancel(c), time.Minute)
	defer cancelCommit()
	var updated catalog.Track
	var storeErr error
	queuePurge, purged := s.purges(commit)
	lockErr := s.store.WithAudioLock(commit, id, func(locked *catalog.Store) error {
		if err := s.write.Rename(commit, tmpKey, audio.Key); err != nil {
			s.removeObject(commit, s.write, tmpKey, id)
			s.log.Error("cannot promote upload", "track", id, "key", audio.Key, "err", err)
			storeErr = errStorage
			return nil
		}
		prev := ""
		if t.SHA256 != nil {
			prev = *t.SHA256
		}
		updated, storeErr = locked.SetAudio(commit, id, prev, audio, s.enqueue, queuePurge)
		if storeErr != nil {
			// Remove the new object unless a row points at it (the same
			// bytes committed by this track before or by a concurrent
			// upload).
			cur, err := locked.TrackForUpdate(commit, id)
			if err != nil || cur.ObjectKey == nil || *cur.ObjectKey != audio.Key || *cur.StorageBackend != audio.Backend {
				s.removeObject(commit, s.write, audio.Key, id)
			}
		}
		return nil
	})
	switch {
	case lockErr != nil:
		// Nothing was recorded. An object already promoted is left: with
		// the lock released, a concurrent upload of the same bytes may
		// have recorded it since; `api orphans` finds it otherwise.
		s.removeObject(commit, s.write, tmpKey, id)
		if updated.ID != uuid.Nil {
			s.log.Error("cannot commit an upload's record", "track", id, "key", audio.Key, "err", lockErr)
		}
		s.fail(ctx, lockErr)
		return
	case errors.Is(storeErr, errStorage):
		problem.Write(ctx, fasthttp.StatusServiceUnavailable, problem.Unavailable, "storage is unavailable; retry")
		return
	case errors.Is(storeErr, catalog.ErrVersionMismatch):
		s.fail(ctx, catalog.ErrConflict) // changed by someone else mid-upload
		return
	case storeErr != nil:
		s.fail(ctx, storeErr)
		return
	}
	if t.ObjectKey != nil && (*t.ObjectKey != audio.Key || *t.StorageBackend != audio.Backend) {
		// New audio replaces the old: its bytes go (the edge forgets
		// them: SetAudio purged them).
		if old, ok := s.backends[*t.StorageBackend]; ok {
			s.removeObject(commit, old, *t.ObjectKey, id)
		}
	}
	purged()
	writeTrack(ctx, fasthttp.StatusOK, updated)
}

// readHead reads the leading bytes Sniff needs: SniffLen, or up to
// catalog.MaxSniffLen to see past an ID3v2 tag. A body shorter than that
// is all read, with io.ErrUnexpectedEOF or io.EOF.
func readHead(body io.Reader) ([]byte, error) {
	head := make([]byte, catalog.SniffLen)
	n, err := io.ReadFull(body, head)
	if err != nil {
		return head[:n], err
	}
	want := catalog.SniffWant(head)
	if want <= n {
		return head, nil
	}
	head = append(head, make([]byte, want-n)...)
	m, err := io.ReadFull(body, head[n:])
	return head[:n+m], err
}

func (s *Server) tooLarge(ctx *fasthttp.RequestCtx) {
	problem.Write(ctx, fasthttp.StatusRequestEntityTooLarge, problem.TooLarge,
		fmt.Sprintf("an upload is at most %d bytes", s.cfg.UploadMaxBytes))
	// The connection is left to fasthttp: it reads and discards an unread
	// body of up to 256 KiB and keeps the connection, and closes it for a
	// larger one, through ops.LingeringListener, which reads what the
	// client still sends before closing. A plain close with the body
	// unread made the kernel reset the connection, and clients then saw
	// "connection reset" instead of this answer.
}

// removeObject deletes an object nothing points at; a failure leaves an
// orphan, which is logged and counted; `api orphans` finds it.
func (s *Server) removeObject(ctx context.Context, b storage.Backend, key string, track uuid.UUID) {
	if err := b.Delete(ctx, key); err != nil {
		s.orphanObjects.Inc()
		s.log.Error("cannot remove object", "track", track, "key", key, "err", err)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
