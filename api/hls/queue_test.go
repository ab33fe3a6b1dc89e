package hls

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/VictoriaMetrics/metrics"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/playgate/playgate/api/catalog"
	"github.com/playgate/playgate/api/hls/m3u8"
	"github.com/playgate/playgate/internal/ops"
	"github.com/playgate/playgate/internal/pgtest"
	"github.com/playgate/playgate/internal/s3test"
	"github.com/playgate/playgate/origin/serve"
	"github.com/playgate/playgate/origin/storage"
)

var pg *pgtest.Server

func TestMain(m *testing.M) { pgtest.Main(m, &pg) }

type queueHarness struct {
	t       *testing.T
	pool    *pgxpool.Pool
	store   *catalog.Store
	backend storage.Backend
	queue   *Queue
	metrics *metrics.Set // the first queue's
}

func newQueueHarness(t *testing.T, backend storage.Backend, collectAfter time.Duration) *queueHarness {
	return newQueueHarnessWith(t, backend, QueueConfig{Workers: 1, CollectAfter: collectAfter})
}

func newQueueHarnessWith(t *testing.T, backend storage.Backend, cfg QueueConfig) *queueHarness {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), pg.NewDatabase(t))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	h := &queueHarness{t: t, pool: pool, store: catalog.NewStore(pool, nil), backend: backend, metrics: metrics.NewSet()}
	h.queue = h.startQueue(cfg, h.metrics)
	return h
}

// startQueue starts a worker on the harness's database and backend.
func (h *queueHarness) startQueue(cfg QueueConfig, set *metrics.Set) *Queue {
	return h.startQueueMaking("64k,128k,256k", cfg, set)
}

// startQueueMaking starts a worker making renditions (HLS_RENDITIONS).
func (h *queueHarness) startQueueMaking(hlsRenditions string, cfg QueueConfig, set *metrics.Set) *Queue {
	h.t.Helper()
	ctx := context.Background()
	renditions, err := ParseRenditions(hlsRenditions)
	require.NoError(h.t, err)
	packager, err := New(Config{Renditions: renditions})
	require.NoError(h.t, err)
	q, err := NewQueue(cfg, h.pool, h.store, map[string]storage.Backend{h.backend.Name(): h.backend}, packager,
		slog.New(slog.NewTextHandler(io.Discard, nil)), set)
	require.NoError(h.t, err)
	require.NoError(h.t, q.Start(ctx))
	h.t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_ = q.Stop(sctx)
	})
	return q
}

// track creates a public track of alice's.
func (h *queueHarness) track(title string) catalog.Track {
	h.t.Helper()
	tr, err := h.store.CreateTrack(context.Background(), "alice", catalog.NewTrack{Title: title, Artist: "A", Visibility: catalog.Public})
	require.NoError(h.t, err)
	return tr
}

// localBackend is a local backend in a temporary directory.
func localBackend(t *testing.T) storage.Backend {
	t.Helper()
	b, err := storage.NewLocal(t.TempDir())
	require.NoError(t, err)
	return b
}

// upload does what the API's upload does: store the original, then
// record it and enqueue packaging in one transaction.
func (h *queueHarness) upload(track catalog.Track, data []byte, ext string) catalog.Track {
	h.t.Helper()
	ctx := context.Background()
	sum := sha256.Sum256(data)
	hexSum := hex.EncodeToString(sum[:])
	key := catalog.OriginalKey(track.ID, hexSum, ext)
	_, err := h.backend.Put(ctx, key, bytes.NewReader(data), "")
	require.NoError(h.t, err)
	prev := ""
	if track.SHA256 != nil {
		prev = *track.SHA256
	}
	t, err := h.store.SetAudio(ctx, track.ID, prev, catalog.Audio{Backend: h.backend.Name(), Key: key,
		ContentType: "audio/mpeg", Size: int64(len(data)), SHA256: hexSum}, h.queue.Enqueue, nil)
	require.NoError(h.t, err)
	assert.Equal(h.t, catalog.HLSQueued, t.HLSStatus)
	return t
}

func (h *queueHarness) waitFor(id uuid.UUID, sha string, want ...catalog.HLSStatus) catalog.Track {
	h.t.Helper()
	var t catalog.Track
	require.Eventually(h.t, func() bool {
		var err error
		t, err = h.store.TrackForUpdate(context.Background(), id)
		require.NoError(h.t, err)
		for _, w := range want {
			if t.HLSStatus == w && t.SHA256 != nil && *t.SHA256 == sha {
				return true
			}
		}
		return false
	}, 120*time.Second, 100*time.Millisecond, "track stayed %s", t.HLSStatus)
	return t
}

func audioFile(t *testing.T, seconds int, freq int) []byte {
	t.Helper()
	out := path.Join(t.TempDir(), "a.mp3")
	b, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi",
		"-i", "sine=frequency="+strconv.Itoa(freq)+":duration="+strconv.Itoa(seconds), out).CombinedOutput()
	require.NoError(t, err, "%s", b)
	data, err := os.ReadFile(out)
	require.NoError(t, err)
	return data
}

// An upload becomes a ready HLS package that a real client decodes to the
// end, on every storage backend.
func TestUploadBecomesPlayableHLS(t *testing.T) {
	backends := map[string]func(*testing.T) storage.Backend{
		"local": func(t *testing.T) storage.Backend {
			b, err := storage.NewLocal(t.TempDir())
			require.NoError(t, err)
			return b
		},
		"s3": func(t *testing.T) storage.Backend { return s3test.Start(t).NewBucket(t) },
	}
	for name, newBackend := range backends {
		t.Run(name, func(t *testing.T) {
			h := newQueueHarness(t, newBackend(t), time.Hour)
			ctx := context.Background()
			tr := h.track("Tone")
			tr = h.upload(tr, audioFile(t, 30, 440), "mp3")
			tr = h.waitFor(tr.ID, *tr.SHA256, catalog.HLSReady, catalog.HLSFailed)
			require.Equal(t, catalog.HLSReady, tr.HLSStatus, "error: %v", tr.HLSError)
			require.NotNil(t, tr.HLSPrefix)
			assert.Equal(t, 100, tr.HLSProgress)
			require.NotNil(t, tr.DurationMS)
			assert.InDelta(t, 30_000, *tr.DurationMS, 100)
			assert.True(t, strings.HasPrefix(*tr.HLSPrefix, "hls/"+tr.ID.String()+"/"))

			// Every URI resolves to a stored object named after its hash.
			read := func(key string) []byte {
				rc, _, err := h.backend.Open(ctx, key, 0, -1)
				require.NoError(t, err, key)
				defer rc.Close()
				b, _ := io.ReadAll(rc)
				return b
			}
			master, err := m3u8.ParseMaster(read(*tr.HLSPrefix + "/master.m3u8"))
			require.NoError(t, err)
			require.Len(t, master.Variants, 3)
			for _, v := range master.Variants {
				dir := *tr.HLSPrefix + "/" + path.Dir(v.URI)
				media, err := m3u8.ParseMedia(read(*tr.HLSPrefix + "/" + v.URI))
				require.NoError(t, err)
				assert.InDelta(t, 30, media.Duration(), 0.2)
				for _, uri := range media.URIs() {
					sum := sha256.Sum256(read(dir + "/" + uri))
					assert.Equal(t, hex.EncodeToString(sum[:16])+path.Ext(uri), uri)
				}
			}

			// ffmpeg, a client nobody here wrote, decodes every rendition
			// through the origin to the end.
			base := startOrigin(t, h.backend)
			assertDecodes(t, base+"/"+*tr.HLSPrefix+"/master.m3u8", 3, 29.5)
		})
	}
}

func startOrigin(t *testing.T, b storage.Backend) string {
	t.Helper()
	srv, err := serve.New(serve.Config{Auth: serve.AuthNone, CORSOrigins: []string{"*"}}, []storage.Backend{b},
		slog.New(slog.NewTextHandler(io.Discard, nil)), metrics.NewSet())
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = ops.Serve(ctx, srv.HTTPServer(), ln, 5*time.Second); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return "http://" + ln.Addr().String()
}

var timeRe = regexp.MustCompile(`time=(\d+):(\d+):(\d+\.\d+)`)

// assertDecodes runs ffmpeg on an HLS URL, decoding renditions audio
// streams, and checks that it reached at least minSeconds.
func assertDecodes(t *testing.T, url string, renditions int, minSeconds float64) {
	t.Helper()
	args := []string{"-hide_banner", "-nostdin", "-i", url}
	for i := 0; i < renditions; i++ {
		args = append(args, "-map", "0:a:"+strconv.Itoa(i))
	}
	out, err := exec.Command("ffmpeg", append(args, "-f", "null", "-")...).CombinedOutput()
	require.NoError(t, err, "ffmpeg could not play %s:\n%s", url, out)
	m := timeRe.FindAllStringSubmatch(string(out), -1)
	require.NotEmpty(t, m, "%s", out)
	last := m[len(m)-1]
	h, _ := strconv.ParseFloat(last[1], 64)
	mi, _ := strconv.ParseFloat(last[2], 64)
	s, _ := strconv.ParseFloat(last[3], 64)
	assert.GreaterOrEqual(t, h*3600+mi*60+s, minSeconds, "decoded to the end")
}

// A bad input fails its job with a clear error, and the worker goes on
// to package the next upload. New audio replaces the package, and the old
// one is collected after the grace period.
func TestFailuresAndReplacement(t *testing.T) {
	h := newQueueHarness(t, localBackend(t), time.Second)
	ctx := context.Background()

	bad := h.track("Bad")
	bad = h.upload(bad, []byte("not audio, although the API's sniffer was told otherwise"), "mp3")
	bad = h.waitFor(bad.ID, *bad.SHA256, catalog.HLSFailed)
	require.NotNil(t, bad.HLSError)
	assert.Contains(t, *bad.HLSError, "unusable input")
	assert.Nil(t, bad.HLSPrefix, "nothing half-written becomes visible")
	var keys []string
	require.NoError(t, h.backend.List(ctx, "hls/", func(o storage.Object) error { keys = append(keys, o.Key); return nil }))
	assert.Empty(t, keys, "a failed job leaves no objects")

	good := h.track("Good")
	good = h.upload(good, audioFile(t, 8, 440), "mp3")
	good = h.waitFor(good.ID, *good.SHA256, catalog.HLSReady)
	first := *good.HLSPrefix

	// New audio: a new package; the old stays until the new one is
	// ready, then goes after the grace period.
	good = h.upload(good, audioFile(t, 8, 660), "mp3")
	good = h.waitFor(good.ID, *good.SHA256, catalog.HLSReady)
	require.NotEqual(t, first, *good.HLSPrefix)
	require.Eventually(t, func() bool {
		n := 0
		_ = h.backend.List(ctx, first+"/", func(storage.Object) error { n++; return nil })
		return n == 0
	}, 30*time.Second, 200*time.Millisecond, "the replaced package is collected")
	n := 0
	require.NoError(t, h.backend.List(ctx, *good.HLSPrefix+"/", func(storage.Object) error { n++; return nil }))
	assert.Positive(t, n, "the current package stays")
}

// A worker that stops interrupts a long job rather than leave it
// "running" for river's rescuer: the track shows queued again, the
// interruption costs no attempt, and the next worker makes the package.
func TestStoppingWorkerRequeuesItsJob(t *testing.T) {
	h := newQueueHarnessWith(t, localBackend(t), QueueConfig{Workers: 1, StopTimeout: 50 * time.Millisecond})
	ctx := context.Background()
	tr := h.track("Long")
	tr = h.upload(tr, audioFile(t, 60, 440), "mp3")
	h.waitFor(tr.ID, *tr.SHA256, catalog.HLSProcessing)

	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	require.NoError(t, h.queue.Stop(sctx))
	stopped, err := h.store.TrackForUpdate(ctx, tr.ID)
	require.NoError(t, err)
	assert.Equal(t, catalog.HLSQueued, stopped.HLSStatus)
	assert.Nil(t, stopped.HLSError, "an interruption is not an error")
	var text strings.Builder
	h.metrics.WritePrometheus(&text)
	assert.Contains(t, text.String(), `playgate_api_packaging_jobs_total{outcome="interrupted"} 1`)
	var state string
	var attempt, maxAttempts int
	require.NoError(t, h.pool.QueryRow(ctx, `SELECT state, attempt, max_attempts FROM river_job WHERE kind = 'hls_package'`).
		Scan(&state, &attempt, &maxAttempts))
	assert.Equal(t, "available", state, "ready for the next worker at once")
	assert.Equal(t, 5, maxAttempts-attempt, "every attempt is left")

	h.startQueue(QueueConfig{Workers: 1}, metrics.NewSet())
	done := h.waitFor(tr.ID, *tr.SHA256, catalog.HLSReady, catalog.HLSFailed)
	assert.Equal(t, catalog.HLSReady, done.HLSStatus, "error: %v", done.HLSError)
}

// An attempt that fails for a reason other than the input leaves the
// track queued with the error shown; the last attempt fails it.
func TestRetriedFailuresShowTheLastError(t *testing.T) {
	h := newQueueHarness(t, localBackend(t), time.Hour)
	ctx := context.Background()
	tr := h.track("Elsewhere")
	// Stored where this worker has no backend: retried, in case another
	// worker has it.
	sum := strings.Repeat("ab", 32)
	_, err := h.store.SetAudio(ctx, tr.ID, "", catalog.Audio{Backend: "s3", Key: catalog.OriginalKey(tr.ID, sum, "mp3"),
		ContentType: "audio/mpeg", Size: 1, SHA256: sum}, h.queue.Enqueue, nil)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		tr, err = h.store.TrackForUpdate(ctx, tr.ID)
		require.NoError(t, err)
		return tr.HLSError != nil
	}, time.Minute, 100*time.Millisecond)
	assert.Equal(t, catalog.HLSQueued, tr.HLSStatus, "it will be tried again")
	assert.Contains(t, *tr.HLSError, `storage backend "s3" is not configured`)

	w := &packageWorker{store: h.store, log: slog.New(slog.NewTextHandler(io.Discard, nil)), metrics: newJobMetrics(metrics.NewSet())}
	last := &river.Job[PackageArgs]{JobRow: &rivertype.JobRow{Attempt: 5, MaxAttempts: 5}, Args: PackageArgs{TrackID: tr.ID, SourceSHA256: sum}}
	require.Error(t, w.fail(ctx, last.Args, errors.New("storage is unavailable: "+strings.Repeat("é", 300)), last))
	tr, err = h.store.TrackForUpdate(ctx, tr.ID)
	require.NoError(t, err)
	assert.Equal(t, catalog.HLSFailed, tr.HLSStatus, "no attempt is left")
	require.NotNil(t, tr.HLSError)
	assert.True(t, utf8.ValidString(*tr.HLSError), "cut at a character's start")
	assert.LessOrEqual(t, len(*tr.HLSError), maxErrorBytes)
}

// After HLS_RENDITIONS changed, a refresh (api repackage) makes the new
// package with the worker's settings while the track keeps serving its
// old one, then swaps them; the old one is collected later. A refresh of
// a package made with the current settings changes nothing.
func TestRefreshReplacesAPackageWhileServingIt(t *testing.T) {
	h := newQueueHarness(t, localBackend(t), time.Hour)
	ctx := context.Background()
	tr := h.packagedFLAC("Lossless")
	old := *tr.HLSPrefix
	assert.False(t, tr.HLSLossless, "made without the lossless tier")

	// The workers now run with the lossless tier.
	q := h.restartMaking("64k,128k,256k,flac")
	require.NoError(t, q.Refresh(ctx, tr.ID, *tr.SHA256))

	var seen []string // what a signer would have read, while it ran
	require.Eventually(t, func() bool {
		var err error
		tr, err = h.store.TrackForUpdate(ctx, tr.ID)
		require.NoError(t, err)
		seen = append(seen, string(tr.HLSStatus))
		return *tr.HLSPrefix != old
	}, 120*time.Second, 20*time.Millisecond)
	for _, status := range seen {
		require.Equal(t, string(catalog.HLSReady), status, "the track stays playable throughout")
	}
	assert.True(t, tr.HLSLossless, "the new package has the lossless tier")
	assert.Equal(t, 100, tr.HLSProgress)
	for _, key := range []string{old + "/master.m3u8", *tr.HLSPrefix + "/master.m3u8", *tr.HLSPrefix + "/lossless.m3u8"} {
		_, err := h.backend.Stat(ctx, key)
		assert.NoError(t, err, "%s: the old package stays for the grace period", key)
	}
	completed := func(n int) func() bool {
		return func() bool {
			var got int
			require.NoError(t, h.pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE kind = 'hls_package' AND state = 'completed'`).Scan(&got))
			return got == n
		}
	}
	// The refresh's job ends after the swap, once it has scheduled the
	// collection.
	require.Eventually(t, completed(2), 30*time.Second, 20*time.Millisecond, "the upload's job and the refresh")
	var collections int
	require.NoError(t, h.pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE kind = 'hls_collect' AND args->>'prefix' = $1`, old).
		Scan(&collections))
	assert.Equal(t, 1, collections, "the old package is collected after the grace period")

	// Up to date: nothing happens.
	current := *tr.HLSPrefix
	version := tr.Version
	require.NoError(t, q.Refresh(ctx, tr.ID, *tr.SHA256))
	require.Eventually(t, completed(3), 30*time.Second, 20*time.Millisecond, "and this one")
	tr, err := h.store.TrackForUpdate(ctx, tr.ID)
	require.NoError(t, err)
	assert.Equal(t, current, *tr.HLSPrefix)
	assert.Equal(t, version, tr.Version, "the row is not touched")
}

// A track stored while HLS was off (no job, hls_status none) is packaged
// once queued (api repackage), as an upload would have been.
func TestQueueHLSPackagesATrackStoredWithoutHLS(t *testing.T) {
	h := newQueueHarness(t, localBackend(t), time.Hour)
	ctx := context.Background()
	tr := h.track("Stored while HLS was off")
	data := audioFile(t, 5, 440)
	sum := sha256.Sum256(data)
	sha := hex.EncodeToString(sum[:])
	key := catalog.OriginalKey(tr.ID, sha, "mp3")
	_, err := h.backend.Put(ctx, key, bytes.NewReader(data), "")
	require.NoError(t, err)
	tr, err = h.store.SetAudio(ctx, tr.ID, "", catalog.Audio{Backend: h.backend.Name(), Key: key, ContentType: "audio/mpeg",
		Size: int64(len(data)), SHA256: sha}, nil, nil)
	require.NoError(t, err)
	require.Equal(t, catalog.HLSNone, tr.HLSStatus)

	require.NoError(t, h.store.QueueHLS(ctx, tr.ID, sha, h.queue.Enqueue))
	tr = h.waitFor(tr.ID, sha, catalog.HLSReady, catalog.HLSFailed)
	assert.Equal(t, catalog.HLSReady, tr.HLSStatus, "error: %v", tr.HLSError)
	assert.ErrorIs(t, h.store.QueueHLS(ctx, tr.ID, sha, h.queue.Enqueue), catalog.ErrNotFound, "a track with a package is left alone")
}

// A replaced package made again (here the old settings back) while its
// collection runs: the job waits for the collection's lock before it
// uploads, so the package the track names again has all its files; a
// collection still pending is cancelled.
func TestPackageMadeAgainWhileItsCollectionRuns(t *testing.T) {
	h := newQueueHarness(t, localBackend(t), time.Hour)
	ctx := context.Background()
	tr := h.packagedFLAC("Back and forth")
	first := *tr.HLSPrefix
	files := h.keysUnder(first + "/")
	require.NotEmpty(t, files)

	// Other settings replace it, and schedule its collection.
	require.NoError(t, h.restartMaking("64k,128k,256k,flac").Refresh(ctx, tr.ID, *tr.SHA256))
	require.Eventually(t, func() bool { tr = h.waitFor(tr.ID, *tr.SHA256, catalog.HLSReady); return *tr.HLSPrefix != first },
		60*time.Second, 50*time.Millisecond)

	// The old settings come back. A collection of the first package is
	// running (this test holds its lock), and deletes it.
	q := h.restartMaking("64k,128k,256k")
	held := make(chan struct{})
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- h.store.WithPackageLock(ctx, first, func(*catalog.Store) error {
			close(held)
			<-release
			for _, k := range h.keysUnder(first + "/") {
				if err := h.backend.Delete(ctx, k); err != nil {
					return err
				}
			}
			return nil
		})
	}()
	<-held
	require.NoError(t, q.Refresh(ctx, tr.ID, *tr.SHA256))
	require.Eventually(t, func() bool {
		var waiting int
		require.NoError(t, h.pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`).Scan(&waiting))
		return waiting > 0
	}, 60*time.Second, 20*time.Millisecond, "the job waits for the collection")
	close(release)
	require.NoError(t, <-done)

	require.Eventually(t, func() bool { tr = h.waitFor(tr.ID, *tr.SHA256, catalog.HLSReady); return *tr.HLSPrefix == first },
		60*time.Second, 50*time.Millisecond)
	assert.Equal(t, files, h.keysUnder(first+"/"), "the package the track names again has all its files")
	var pending int
	require.NoError(t, h.pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE kind = 'hls_collect' AND args->>'prefix' = $1
		AND state NOT IN ('cancelled', 'completed', 'discarded')`, first).Scan(&pending))
	assert.Zero(t, pending, "its pending collection is cancelled")
}

// packagedFLAC uploads 8 s of FLAC to a new track and waits for its
// package, made with the harness's first queue (64k,128k,256k).
func (h *queueHarness) packagedFLAC(title string) catalog.Track {
	h.t.Helper()
	flac, err := os.ReadFile(tone(h.t, 8, "tone.flac"))
	require.NoError(h.t, err)
	tr := h.upload(h.track(title), flac, "flac")
	tr = h.waitFor(tr.ID, *tr.SHA256, catalog.HLSReady, catalog.HLSFailed)
	require.Equal(h.t, catalog.HLSReady, tr.HLSStatus, "error: %v", tr.HLSError)
	return tr
}

// restartMaking stops the harness's queue and starts one making other
// renditions, as a rollout of new HLS_RENDITIONS does.
func (h *queueHarness) restartMaking(renditions string) *Queue {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(h.t, h.queue.Stop(ctx))
	h.queue = h.startQueueMaking(renditions, QueueConfig{Workers: 1, CollectAfter: time.Hour}, metrics.NewSet())
	return h.queue
}

// keysUnder lists the backend's keys under prefix, sorted.
func (h *queueHarness) keysUnder(prefix string) []string {
	h.t.Helper()
	var keys []string
	require.NoError(h.t, h.backend.List(context.Background(), prefix, func(o storage.Object) error {
		keys = append(keys, o.Key)
		return nil
	}))
	slices.Sort(keys)
	return keys
}
