package hls

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/playgate/playgate/api/catalog"
	"github.com/playgate/playgate/internal/s3test"
	"github.com/playgate/playgate/origin/storage"
)

func exists(t *testing.T, b storage.Backend, key string) bool {
	t.Helper()
	_, err := b.Stat(context.Background(), key)
	if err != nil {
		require.ErrorIs(t, err, storage.ErrNotFound)
	}
	return err == nil
}

// The sweep removes uploads that were never promoted once they are older
// than SweepAfter, and nothing a track can name.
func TestSweepRemovesUnpromotedUploads(t *testing.T) {
	for name, newBackend := range map[string]func(*testing.T) storage.Backend{
		"local": func(t *testing.T) storage.Backend {
			b, err := storage.NewLocal(t.TempDir())
			require.NoError(t, err)
			t.Cleanup(func() { b.Close() })
			return b
		},
		"s3": func(t *testing.T) storage.Backend { return s3test.Start(t).NewBucket(t) },
	} {
		t.Run(name, func(t *testing.T) {
			b := newBackend(t)
			ctx := t.Context()
			track := uuid.New()
			upload := catalog.UploadKey(track, "0123456789abcdef")
			original := catalog.OriginalKey(track, strings.Repeat("ab", 32), "mp3")
			for _, key := range []string{upload, original} {
				_, err := b.Put(ctx, key, strings.NewReader("audio"), "")
				require.NoError(t, err)
			}
			run := func(after time.Duration) {
				w := newSweepWorker(map[string]storage.Backend{b.Name(): b}, after, slog.New(slog.NewTextHandler(io.Discard, nil)), metrics.NewSet())
				require.NoError(t, w.Work(ctx, &river.Job[SweepArgs]{}))
			}

			run(time.Hour)
			assert.True(t, exists(t, b, upload), "an upload of the last hour may be promoted yet")

			// A negative age puts the cutoff ahead: the upload is "old".
			run(-time.Minute)
			assert.False(t, exists(t, b, upload))
			assert.True(t, exists(t, b, original), "what a track names is never swept")
		})
	}
}

// Workers sweep when they start, without waiting for the first hour.
func TestWorkersSweepAtStart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	b, err := storage.NewLocal(dir)
	require.NoError(t, err)
	defer b.Close()
	key := catalog.UploadKey(uuid.New(), "fedcba9876543210")
	_, err = b.Put(ctx, key, strings.NewReader("half promoted"), "")
	require.NoError(t, err)
	leftover := filepath.Join(dir, catalog.UploadsPrefix, "x", ".tmp-0000000000000001")
	require.NoError(t, os.MkdirAll(filepath.Dir(leftover), 0o755))
	require.NoError(t, os.WriteFile(leftover, []byte("half written"), 0o644))
	old := time.Now().Add(-48 * time.Hour)
	require.NoError(t, os.Chtimes(filepath.Join(dir, key), old, old))
	require.NoError(t, os.Chtimes(leftover, old, old))

	pool, err := pgxpool.New(ctx, pg.NewDatabase(t))
	require.NoError(t, err)
	defer pool.Close()
	packager, err := New(Config{Renditions: []Rendition{{Name: "64k", Bitrate: 64000}}})
	require.NoError(t, err)
	set := metrics.NewSet()
	q, err := NewQueue(QueueConfig{Workers: 1}, pool, catalog.NewStore(pool, nil),
		map[string]storage.Backend{b.Name(): b}, packager, slog.New(slog.NewTextHandler(io.Discard, nil)), set)
	require.NoError(t, err)
	require.NoError(t, q.Start(ctx))
	defer func() {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_ = q.Stop(sctx)
	}()

	// The count is added when the sweep of the backend ends.
	require.Eventually(t, func() bool {
		var text strings.Builder
		set.WritePrometheus(&text)
		return strings.Contains(text.String(), "playgate_api_swept_uploads_total 2\n")
	}, time.Minute, 100*time.Millisecond, "two leftovers are swept")
	assert.False(t, exists(t, b, key), "the unpromoted upload of two days ago is gone")
	assert.NoFileExists(t, leftover, "so is the temporary file of two days ago")
}

// A replaced package waiting out its grace period is pending collection
// until its job has run.
func TestPendingCollections(t *testing.T) {
	h := newQueueHarness(t, localBackend(t), time.Hour)
	ctx := context.Background()
	track := uuid.New()
	soon := "hls/" + track.String() + "/0123456789abcdef"
	_, err := h.queue.client.Insert(ctx, CollectArgs{TrackID: track, Backend: "local", Prefix: soon},
		&river.InsertOpts{ScheduledAt: time.Now().Add(time.Hour)})
	require.NoError(t, err)
	now := "hls/" + track.String() + "/fedcba9876543210"
	_, err = h.queue.client.Insert(ctx, CollectArgs{TrackID: track, Backend: "local", Prefix: now}, nil)
	require.NoError(t, err)

	// The second runs at once (nothing names it) and is then done.
	require.Eventually(t, func() bool {
		pending, err := h.queue.PendingCollections(ctx)
		require.NoError(t, err)
		return !pending[now]
	}, time.Minute, 100*time.Millisecond)
	pending, err := h.queue.PendingCollections(ctx)
	require.NoError(t, err)
	assert.Equal(t, map[string]bool{soon: true}, pending)
}
