package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/playgate/playgate/api/auth"
	"github.com/playgate/playgate/api/catalog"
	"github.com/playgate/playgate/api/httpapi"
	"github.com/playgate/playgate/api/purge"
	"github.com/playgate/playgate/internal/ops"
	"github.com/playgate/playgate/internal/pgtest"
	"github.com/playgate/playgate/internal/problem"
	"github.com/playgate/playgate/internal/s3test"
	"github.com/playgate/playgate/origin/storage"
)

var pg *pgtest.Server

func TestMain(m *testing.M) {
	code := pgtest.Run(m, &pg)
	if fixtureDir != "" {
		os.RemoveAll(fixtureDir)
	}
	os.Exit(code)
}

var secret = []byte("test-secret-test-secret-test-secret!")

// recordingPurger remembers what the API asked to purge.
type recordingPurger struct {
	mu    sync.Mutex
	paths []string
}

func (p *recordingPurger) Purge(_ context.Context, paths []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.paths = append(p.paths, paths...)
}

func (p *recordingPurger) Paths() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.paths...)
}

var _ purge.Purger = (*recordingPurger)(nil)

type harness struct {
	t       *testing.T
	base    string
	dbURL   string
	primary *pgxpool.Pool
	backend storage.Backend
	purger  *recordingPurger
	metrics *metrics.Set
}

type harnessOptions struct {
	backend        string // "local" (default) or "s3"
	uploadMaxBytes int64
	uploadSlots    int    // UploadConcurrency
	readURL        string // a different read database, to prove reads go there
	purger         purge.Purger
	poolMaxConns   int           // the primary pool's size (0: pgx's default, max(4, CPUs))
	purgeAgain     time.Duration // PurgeAgainAfter
}

func newHarness(t *testing.T, o harnessOptions) *harness {
	t.Helper()
	ctx := context.Background()
	dbURL := pg.NewDatabase(t)
	poolURL := dbURL
	if o.poolMaxConns > 0 {
		poolURL += sep(dbURL) + "pool_max_conns=" + strconv.Itoa(o.poolMaxConns)
	}
	primary, err := pgxpool.New(ctx, poolURL)
	require.NoError(t, err)
	t.Cleanup(primary.Close)
	var read *pgxpool.Pool
	if o.readURL != "" {
		read, err = pgxpool.New(ctx, o.readURL)
		require.NoError(t, err)
		t.Cleanup(read.Close)
	}

	var backend storage.Backend
	switch o.backend {
	case "", "local":
		l, err := storage.NewLocal(t.TempDir())
		require.NoError(t, err)
		backend = l
	case "s3":
		backend = s3test.Start(t).NewBucket(t)
	}
	if o.uploadMaxBytes == 0 {
		o.uploadMaxBytes = 64 << 20
	}
	verifier, err := auth.NewVerifier(auth.Config{Secret: secret})
	require.NoError(t, err)
	set := metrics.NewSet()
	h := &harness{t: t, dbURL: dbURL, primary: primary, backend: backend, purger: &recordingPurger{}, metrics: set}
	srv, err := httpapi.New(httpapi.Config{
		UploadMaxBytes:    o.uploadMaxBytes,
		UploadConcurrency: o.uploadSlots,
		SignerURL:         "http://signer.test",
		WriteBackend:      backend.Name(),
		PurgeAgainAfter:   o.purgeAgain,
	}, httpapi.Deps{
		Store:    catalog.NewStore(primary, read),
		Backends: map[string]storage.Backend{backend.Name(): backend},
		Verifier: verifier,
		Purger:   purgerOr(o.purger, h.purger),
		Log:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		Metrics:  set,
	})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- ops.Serve(sctx, srv.HTTPServer(), ops.LingeringListener(ln, 2*time.Second), 5*time.Second)
	}()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-done)
	})
	h.base = "http://" + ln.Addr().String()
	return h
}

func (h *harness) token(sub string) string {
	tok, err := auth.Mint(secret, auth.MintOptions{Subject: sub, TTL: time.Hour})
	require.NoError(h.t, err)
	return tok
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T, v any) {
	t.Helper()
	require.NoError(t, json.Unmarshal(r.body, v), "body: %s", r.body)
}

// problemType asserts a problem+json body and returns its type suffix.
func (r response) problemType(t *testing.T) string {
	t.Helper()
	assert.Equal(t, problem.ContentType, r.header.Get("Content-Type"), "body: %s", r.body)
	var p problem.Problem
	r.json(t, &p)
	assert.Equal(t, r.status, p.Status)
	suffix, ok := strings.CutPrefix(p.Type, problem.TypeBase)
	assert.True(t, ok, "type %q starts with %s", p.Type, problem.TypeBase)
	return suffix
}

func (h *harness) do(method, path, user string, body io.Reader, header ...string) response {
	h.t.Helper()
	req, err := http.NewRequest(method, h.base+path, body)
	require.NoError(h.t, err)
	if user != "" {
		req.Header.Set("Authorization", "Bearer "+h.token(user))
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(h.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(h.t, err)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func (h *harness) doJSON(method, path, user string, v any, header ...string) response {
	h.t.Helper()
	b, err := json.Marshal(v)
	require.NoError(h.t, err)
	return h.do(method, path, user, bytes.NewReader(b), append([]string{"Content-Type", "application/json"}, header...)...)
}

func (h *harness) createTrack(user, visibility string, price int64) catalog.Track {
	h.t.Helper()
	r := h.doJSON("POST", "/v1/tracks", user, map[string]any{
		"title": "Song of " + user, "artist": "The Testers", "visibility": visibility, "price_cents": price,
	})
	require.Equal(h.t, http.StatusCreated, r.status, "body: %s", r.body)
	var tr catalog.Track
	r.json(h.t, &tr)
	return tr
}

func (h *harness) upload(user string, id string, data []byte) response {
	h.t.Helper()
	return h.do("PUT", "/v1/tracks/"+id+"/audio", user, bytes.NewReader(data), "Content-Type", "audio/mpeg")
}

// objectKeys lists every object in the backend.
func (h *harness) objectKeys() []string {
	h.t.Helper()
	var keys []string
	require.NoError(h.t, h.backend.List(context.Background(), "", func(o storage.Object) error {
		keys = append(keys, o.Key)
		return nil
	}))
	return keys
}

var (
	fixtureOnce sync.Once
	fixtureDir  string
	fixtureErr  error
)

// audioFixture returns a real audio file made by ffmpeg (a sine tone).
func audioFixture(t *testing.T, name string) []byte {
	t.Helper()
	fixtureOnce.Do(func() {
		fixtureDir, fixtureErr = os.MkdirTemp("", "playgate-audio-")
		if fixtureErr != nil {
			return
		}
		for _, f := range []struct {
			name, src string
			args      []string
		}{
			{"tone.mp3", "sine=frequency=440:duration=2", nil},
			{"other.mp3", "sine=frequency=660:duration=2", nil},
			{"long.wav", "sine=frequency=440:duration=20", nil},
			// AAC behind an ID3v2 tag longer than catalog.SniffLen.
			{"tagged.aac", "sine=frequency=440:duration=2", []string{"-c:a", "aac", "-write_id3v2", "1",
				"-metadata", "comment=" + strings.Repeat("liner notes ", 200), "-f", "adts"}},
		} {
			args := append([]string{"-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", f.src}, f.args...)
			out, err := exec.Command("ffmpeg", append(args, filepath.Join(fixtureDir, f.name))...).CombinedOutput()
			if err != nil {
				fixtureErr = &exec.Error{Name: "ffmpeg (apt-get install -y ffmpeg, or make deps): " + string(out), Err: err}
				return
			}
		}
	})
	require.NoError(t, fixtureErr)
	b, err := os.ReadFile(filepath.Join(fixtureDir, name))
	require.NoError(t, err)
	return b
}

// sep is what joins a parameter to url's query.
func sep(url string) string {
	if strings.Contains(url, "?") {
		return "&"
	}
	return "?"
}

func purgerOr(p purge.Purger, fallback *recordingPurger) purge.Purger {
	if p != nil {
		return p
	}
	return fallback
}
