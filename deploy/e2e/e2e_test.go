// Package e2e runs the whole stack as an operator would, with real
// clients nobody here wrote: the api (with its packaging worker), the
// signer, the self-hosted edge (nginx + njs) and the origin, on real
// PostgreSQL and storage; curl and ffmpeg play through it.
package e2e

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/playgate/playgate/api/auth"
	"github.com/playgate/playgate/api/catalog"
	"github.com/playgate/playgate/api/hls"
	"github.com/playgate/playgate/api/httpapi"
	"github.com/playgate/playgate/api/purge"
	"github.com/playgate/playgate/deploy/edge"
	"github.com/playgate/playgate/internal/ops"
	"github.com/playgate/playgate/internal/pgtest"
	"github.com/playgate/playgate/origin/serve"
	"github.com/playgate/playgate/origin/storage"
	"github.com/playgate/playgate/signer/playback"
	"github.com/playgate/playgate/signer/token"
	"github.com/playgate/playgate/signer/trackcache"
)

var pg *pgtest.Server

func TestMain(m *testing.M) { pgtest.Main(m, &pg) }

var (
	jwtSecret = []byte("e2e-jwt-secret-e2e-jwt-secret-e2e!")
	cdnKey    = "e2e-cdn-key-0123456789abcdef"
	secret    = "e2e-origin-secret-0123"
)

type stack struct {
	api, signer, edge string
	purge, edgeDir    string // the edge's purge endpoint and its directory
	originPulls       *atomic.Int64
	token             string
}

func serveOn(t *testing.T, srv *fasthttp.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = ops.Serve(ctx, srv, ln, 5*time.Second); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return "http://" + ln.Addr().String()
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

// logCache shows what the edge's cache holds for the object path, and
// what a purge of it answers now.
func (s *stack) logCache(t *testing.T, path string) {
	sum := fmt.Sprintf("%x", md5.Sum([]byte(path)))
	file := filepath.Join(s.edgeDir, "cache", sum[31:], sum[29:31], sum)
	_, err := os.Stat(file)
	t.Logf("cache file for %s: %s (stat: %v)", path, file, err)
	_ = filepath.WalkDir(filepath.Join(s.edgeDir, "cache"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				t.Logf("  %s %d bytes, modified %s", p, fi.Size(), fi.ModTime().Format(time.RFC3339Nano))
			}
		}
		return nil
	})
	if resp, err := http.Get(s.purge + "/purge" + path); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Logf("purge now: %d %s", resp.StatusCode, b)
	}
}

// lockedBuffer collects log lines from many goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func startStack(t *testing.T) *stack {
	t.Helper()
	ctx := context.Background()
	// The services' logs and the edge's error log are shown when a test
	// fails: an end-to-end failure is otherwise a bare assertion.
	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("service logs:\n%s", logs.String())
		}
	})
	dbURL := pg.NewDatabase(t)
	pool, err := pgxpool.New(ctx, dbURL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	objects, err := storage.NewLocal(t.TempDir())
	require.NoError(t, err)
	backends := map[string]storage.Backend{"local": objects}
	store := catalog.NewStore(pool, nil)
	s := &stack{originPulls: &atomic.Int64{}}

	// origin, pulled by the edge with the shared secret
	osrv, err := serve.New(serve.Config{Auth: serve.AuthHeader, SecretHeader: "X-Origin-Secret", Secret: []byte(secret),
		CORSOrigins: []string{"*"}}, []storage.Backend{objects}, log, metrics.NewSet())
	require.NoError(t, err)
	oh := osrv.Handler()
	origin := serveOn(t, &fasthttp.Server{Handler: func(c *fasthttp.RequestCtx) { s.originPulls.Add(1); oh(c) }})

	// edge
	dir, err := os.MkdirTemp("", "playgate-e2e-edge-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	purgeAddr := freeAddr(t)
	e, err := edge.Start(dir, edge.Config{Listen: freeAddr(t), Origin: origin, Keys: []string{cdnKey}, Secret: secret, PurgeListen: purgeAddr})
	require.NoError(t, err, edge.InstallHint)
	t.Cleanup(e.Stop)
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("edge error log:\n%s", b)
		}
	})
	s.edge = "http://" + e.Addr
	s.purge, s.edgeDir = "http://"+purgeAddr, dir

	// signer, signing for the edge, listening for changes
	verifier, err := auth.NewVerifier(auth.Config{Secret: jwtSecret})
	require.NoError(t, err)
	sset := metrics.NewSet()
	cache, err := trackcache.New(trackcache.Config{MaxBytes: 16 << 20, NegativeTTL: 10 * time.Second, GrantTTL: time.Minute}, pool, log, sset)
	require.NoError(t, err)
	t.Cleanup(cache.Close)
	lctx, stop := context.WithCancel(ctx)
	t.Cleanup(stop)
	ready := make(chan struct{})
	go cache.Listen(lctx, dbURL, ready)
	<-ready
	signer, err := token.New(token.Config{Provider: "bunny", BaseURL: s.edge, Key: []byte(cdnKey)})
	require.NoError(t, err)
	ssrv, err := playback.New(playback.Config{Provider: "bunny", TokenTTL: time.Hour, TokenBucket: 5 * time.Minute,
		Capabilities: token.CapabilitiesOf("bunny"), CORSOrigins: []string{"*"}},
		playback.Deps{Cache: cache, Signer: signer, Verifier: verifier, Log: log, Metrics: sset, Ready: cache.Ready(pool)})
	require.NoError(t, err)
	s.signer = serveOn(t, ssrv.HTTPServer())

	// api with one packaging worker
	renditions, err := hls.ParseRenditions("64k,128k,256k,flac")
	require.NoError(t, err)
	packager, err := hls.New(hls.Config{Renditions: renditions})
	require.NoError(t, err)
	set := metrics.NewSet()
	queue, err := hls.NewQueue(hls.QueueConfig{Workers: 1}, pool, store, backends, packager, log, set)
	require.NoError(t, err)
	require.NoError(t, queue.Start(ctx))
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_ = queue.Stop(c)
	})
	purger := purge.NewQueue(purge.QueueConfig{Backoff: 10 * time.Millisecond}, "selfhosted",
		&purge.SelfHosted{URL: "http://" + purgeAddr, List: storage.Lister(objects)}, log, set)
	pctx, stopPurger := context.WithCancel(ctx)
	t.Cleanup(stopPurger)
	go purger.Run(pctx)
	asrv, err := httpapi.New(httpapi.Config{UploadMaxBytes: 64 << 20, SignerURL: s.signer, WriteBackend: "local"},
		httpapi.Deps{Store: store, Backends: backends, Verifier: verifier, Purger: purger,
			Enqueue: queue.Enqueue, Log: log, Metrics: set})
	require.NoError(t, err)
	s.api = serveOn(t, asrv.HTTPServer())

	s.token, err = auth.Mint(jwtSecret, auth.MintOptions{Subject: "alice", TTL: time.Hour})
	require.NoError(t, err)
	return s
}

func (s *stack) call(t *testing.T, method, url, contentType string, body io.Reader) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+s.token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// uploadTrack creates a public track through the API, uploads a 10 s
// tone as FLAC, so that the package has the lossless tier too, and
// waits for its HLS package.
func (s *stack) uploadTrack(t *testing.T) (catalog.Track, []byte) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "tone.flac")
	out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi",
		"-i", "sine=frequency=440:duration=10", "-ac", "2", src).CombinedOutput()
	require.NoError(t, err, "%s", out)
	audio, err := os.ReadFile(src)
	require.NoError(t, err)
	status, body := s.call(t, "POST", s.api+"/v1/tracks", "application/json",
		strings.NewReader(`{"title":"E2E","artist":"Test","visibility":"public"}`))
	require.Equal(t, http.StatusCreated, status, "%s", body)
	var tr catalog.Track
	require.NoError(t, json.Unmarshal(body, &tr))
	status, body = s.call(t, "PUT", s.api+"/v1/tracks/"+tr.ID.String()+"/audio", "audio/flac", bytes.NewReader(audio))
	require.Equal(t, http.StatusOK, status, "%s", body)
	require.Eventually(t, func() bool {
		_, body := s.call(t, "GET", s.api+"/v1/tracks/"+tr.ID.String(), "", nil)
		require.NoError(t, json.Unmarshal(body, &tr))
		return tr.HLSStatus == catalog.HLSReady || tr.HLSStatus == catalog.HLSFailed
	}, 90*time.Second, 200*time.Millisecond)
	require.Equal(t, catalog.HLSReady, tr.HLSStatus, "packaging failed: %v", tr.HLSError)
	require.True(t, tr.HLSLossless, "a FLAC upload gets the lossless tier")
	return tr, audio
}

func TestPlayThroughTheEdge(t *testing.T) {
	for _, tool := range []string{"curl", "ffmpeg"} {
		_, err := exec.LookPath(tool)
		require.NoError(t, err, "%s is needed (apt-get install -y %s)", tool, tool)
	}
	s := startStack(t)
	tr, audio := s.uploadTrack(t)
	stream := s.signer + "/v1/tracks/" + tr.ID.String() + "/stream"

	// curl -L with a Range: 206 and the exact bytes, through signer → edge → origin.
	curl := func() []byte {
		out, err := exec.Command("curl", "-sSfL", "-r", "1000-1999", stream).Output()
		require.NoError(t, err)
		return out
	}
	assert.Equal(t, audio[1000:2000], curl())
	pulls := s.originPulls.Load()
	// A second play is an edge hit: the origin's request counter does not move.
	assert.Equal(t, audio[1000:2000], curl())
	assert.Equal(t, pulls, s.originPulls.Load(), "the second play is served by the edge")
	out, err := exec.Command("curl", "-sSIL", "-r", "1000-1999", stream).Output()
	require.NoError(t, err)
	assert.Contains(t, string(out), "HTTP/1.1 206")
	assert.Regexp(t, `(?i)x-cache: HIT`, string(out))

	// ffmpeg as the HLS client decodes every rendition to the end: the
	// AAC ones of the master, and the lossless tier of the one asked for.
	for query, variants := range map[string]int{"": 3, "?quality=lossless": 4} {
		args := []string{"-hide_banner", "-nostdin", "-i", s.signer + "/v1/tracks/" + tr.ID.String() + "/hls" + query}
		for i := range variants {
			args = append(args, "-map", "0:a:"+strconv.Itoa(i))
		}
		ff, err := exec.Command("ffmpeg", append(args, "-f", "null", "-")...).CombinedOutput()
		require.NoError(t, err, "%s", ff)
		assert.NotRegexp(t, `Stream #0:`+strconv.Itoa(variants), string(ff), "%d variants in %q", variants, query)
		flac := regexp.MustCompile(`Stream #0:0.*: Audio: flac`).MatchString(string(ff))
		assert.Equal(t, query != "", flac, "FLAC first in %q, and only there", query)
		m := regexp.MustCompile(`time=00:00:(\d+\.\d+)`).FindAllStringSubmatch(string(ff), -1)
		require.NotEmpty(t, m)
		secs, _ := strconv.ParseFloat(m[len(m)-1][1], 64)
		assert.GreaterOrEqual(t, secs, 9.5, "decoded to the end")
	}

	// A tampered or other-track token is refused at the edge and never
	// reaches the origin.
	loc := location(t, stream)
	i := strings.Index(loc, "HS256-") + len("HS256-")
	c := byte('A')
	if loc[i] == 'A' {
		c = 'B'
	}
	pulls = s.originPulls.Load()
	for name, u := range map[string]string{
		"tampered":    loc[:i] + string(c) + loc[i+1:],
		"other track": strings.Replace(loc, tr.ID.String(), "0190a0b4-0000-7000-8000-000000000009", 1),
	} {
		resp, err := http.Get(u)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusForbidden, resp.StatusCode, name)
	}
	assert.Equal(t, pulls, s.originPulls.Load())

	// Privacy flip: the next signer request answers 404 within a second,
	// and the edge's copy is purged (an old URL is a MISS again).
	before, err := http.Get(loc)
	require.NoError(t, err)
	before.Body.Close()
	require.Equal(t, "HIT", before.Header.Get("X-Cache"))
	status, body := s.call(t, "PATCH", s.api+"/v1/tracks/"+tr.ID.String(), "application/json", strings.NewReader(`{"visibility":"private"}`))
	require.Equal(t, http.StatusOK, status, "%s", body)
	// Not following the 302s: a redirect followed before the signer saw
	// the change would refill the edge just purged (it did, in CI).
	require.Eventually(t, func() bool {
		resp, err := noRedirects.Get(stream)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusNotFound
	}, time.Second, 20*time.Millisecond)
	// Purged, the edge goes back to the origin for the object: one of the
	// requests below is a MISS, and the origin is pulled again (counted
	// too, since a request that failed may still have refilled the cache).
	pulls = s.originPulls.Load()
	var seen lockedBuffer // what each request got, for a failure's message
	if !assert.Eventually(t, func() bool {
		resp, err := http.Get(loc)
		if err != nil {
			fmt.Fprintf(&seen, "%v; ", err)
			return false
		}
		resp.Body.Close()
		fmt.Fprintf(&seen, "%s; ", resp.Header.Get("X-Cache"))
		return resp.Header.Get("X-Cache") == "MISS" || s.originPulls.Load() > pulls
	}, 5*time.Second, 50*time.Millisecond, "the edge copy is purged") {
		t.Logf("answers seen: %s", seen.String())
		s.logCache(t, "/"+*tr.ObjectKey)
	}
}

// noRedirects answers with the signer's 302 itself.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// location asks the signer for a redirect without following it.
func location(t *testing.T, url string) string {
	t.Helper()
	resp, err := noRedirects.Get(url)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusFound, resp.StatusCode)
	return resp.Header.Get("Location")
}

// hls.js in Debian's Chromium plays a short track from the player page
// to the end, HLS through signer → edge → origin, and a seek lands where
// asked: AAC by default, though the lossless tier is there, and FLAC
// once the page's lossless choice is ticked, before playing or during.
func TestPlayerPageInChromium(t *testing.T) {
	node, err := exec.LookPath("node")
	require.NoError(t, err, "node is needed (make deps)")
	_, err = os.Stat("player/node_modules/playwright-core")
	require.NoError(t, err, "the player test's packages are missing: make deps (npm ci in deploy/e2e/player)")
	chromium := "/usr/bin/chromium"
	_, err = os.Stat(chromium)
	require.NoError(t, err, "chromium is needed: apt-get install -y chromium (or make deps)")

	s := startStack(t)
	s.uploadTrack(t)
	for choice, want := range map[string]struct{ codec, shown string }{
		"":         {"mp4a.40.2", "AAC"},
		"lossless": {"flac", "lossless (FLAC)"},
		"switch":   {"flac", "lossless (FLAC)"},
	} {
		cmd := exec.Command(node, "player/play.mjs", s.api+"/", "6", choice)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		require.NoError(t, err, "the browser did not play %q: %s", choice, stderr.String())
		var result struct {
			Mode      string
			AfterSeek float64
			Ended     bool
			Duration  float64
			Codec     string
			Shown     string
		}
		require.NoError(t, json.Unmarshal(out, &result), "%s", out)
		assert.Equal(t, "hls", result.Mode, "played with hls.js, not the fallback")
		assert.True(t, result.Ended, "played to the end")
		assert.InDelta(t, 6, result.AfterSeek, 1.5, "the seek landed where asked")
		assert.InDelta(t, 10, result.Duration, 0.5)
		assert.Equal(t, want.codec, strings.ToLower(result.Codec), "the variant heard last, choice %q", choice)
		assert.Contains(t, result.Shown, want.shown, "the page says what is playing")
	}
}
