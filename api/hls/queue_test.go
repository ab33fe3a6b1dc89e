package hls

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
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
	store   *catalog.Store
	backend storage.Backend
	queue   *Queue
}

func newQueueHarness(t *testing.T, backend storage.Backend, collectAfter time.Duration) *queueHarness {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pg.NewDatabase(t))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	store := catalog.NewStore(pool, nil)
	renditions, err := ParseRenditions("64k,128k,256k")
	require.NoError(t, err)
	packager, err := New(Config{Renditions: renditions})
	require.NoError(t, err)
	q, err := NewQueue(QueueConfig{Workers: 1, CollectAfter: collectAfter}, pool, store,
		map[string]storage.Backend{backend.Name(): backend}, packager,
		slog.New(slog.NewTextHandler(io.Discard, nil)), metrics.NewSet())
	require.NoError(t, err)
	require.NoError(t, q.Start(ctx))
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_ = q.Stop(sctx)
	})
	return &queueHarness{t: t, store: store, backend: backend, queue: q}
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
		ContentType: "audio/mpeg", Size: int64(len(data)), SHA256: hexSum}, h.queue.Enqueue)
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
			tr, err := h.store.CreateTrack(ctx, "alice", catalog.NewTrack{Title: "Tone", Artist: "A", Visibility: catalog.Public})
			require.NoError(t, err)
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
	b, err := storage.NewLocal(t.TempDir())
	require.NoError(t, err)
	h := newQueueHarness(t, b, time.Second)
	ctx := context.Background()

	bad, err := h.store.CreateTrack(ctx, "alice", catalog.NewTrack{Title: "Bad", Artist: "A", Visibility: catalog.Public})
	require.NoError(t, err)
	bad = h.upload(bad, []byte("not audio, although the API's sniffer was told otherwise"), "mp3")
	bad = h.waitFor(bad.ID, *bad.SHA256, catalog.HLSFailed)
	require.NotNil(t, bad.HLSError)
	assert.Contains(t, *bad.HLSError, "unusable input")
	assert.Nil(t, bad.HLSPrefix, "nothing half-written becomes visible")
	var keys []string
	require.NoError(t, b.List(ctx, "hls/", func(o storage.Object) error { keys = append(keys, o.Key); return nil }))
	assert.Empty(t, keys, "a failed job leaves no objects")

	good, err := h.store.CreateTrack(ctx, "alice", catalog.NewTrack{Title: "Good", Artist: "A", Visibility: catalog.Public})
	require.NoError(t, err)
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
		_ = b.List(ctx, first+"/", func(storage.Object) error { n++; return nil })
		return n == 0
	}, 30*time.Second, 200*time.Millisecond, "the replaced package is collected")
	n := 0
	require.NoError(t, b.List(ctx, *good.HLSPrefix+"/", func(storage.Object) error { n++; return nil }))
	assert.Positive(t, n, "the current package stays")
}
