package serve_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/playgate/playgate/internal/ops"
	"github.com/playgate/playgate/internal/problem"
	"github.com/playgate/playgate/internal/s3test"
	"github.com/playgate/playgate/origin/serve"
	"github.com/playgate/playgate/origin/storage"
	"github.com/playgate/playgate/signer/token"
)

const (
	trackID   = "0190a0b4-0000-7000-8000-000000000001"
	playlist  = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n" // repeated to be worth compressing
	originURL = "http://origin.test"
)

var ctx = context.Background()

type fixture struct {
	base     string
	backend  storage.Backend
	original []byte
	origKey  string
	origHash string
	segKey   string
	segment  []byte
	listKey  string
	list     []byte
	metrics  *metrics.Set
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// newOrigin stores a 3 MiB original, a segment and a playlist in b and
// serves them with cfg.
func newOrigin(t *testing.T, cfg serve.Config, backends ...storage.Backend) *fixture {
	t.Helper()
	f := &fixture{backend: backends[0], original: randomBytes(3 << 20), segment: randomBytes(100_000),
		list: []byte(strings.Repeat(playlist, 40)), metrics: metrics.NewSet()}
	sum := sha256.Sum256(f.original)
	f.origHash = hex.EncodeToString(sum[:])
	f.origKey = "tracks/" + trackID + "/" + f.origHash + ".mp3"
	segSum := sha256.Sum256(f.segment)
	f.segKey = "hls/" + trackID + "/p1/128k/" + hex.EncodeToString(segSum[:16]) + ".m4s"
	f.listKey = "hls/" + trackID + "/p1/128k/index.m3u8"
	for key, data := range map[string][]byte{f.origKey: f.original, f.segKey: f.segment, f.listKey: f.list} {
		_, err := f.backend.Put(ctx, key, bytes.NewReader(data), "")
		require.NoError(t, err)
	}
	if cfg.CORSOrigins == nil {
		cfg.CORSOrigins = []string{"*"}
	}
	if cfg.Auth == "" {
		cfg.Auth = serve.AuthNone
	}
	srv, err := serve.New(cfg, backends, slog.New(slog.NewTextHandler(io.Discard, nil)), f.metrics)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = ops.Serve(sctx, srv.HTTPServer(), srv.Listener(ln), 5*time.Second); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	f.base = "http://" + ln.Addr().String()
	return f
}

type response struct {
	status int
	header http.Header
	body   []byte
}

var client = &http.Client{Transport: &http.Transport{DisableCompression: true}}

func (f *fixture) do(t *testing.T, method, path string, header ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, f.base+path, nil)
	require.NoError(t, err)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func backends(t *testing.T) map[string]func(t *testing.T) storage.Backend {
	return map[string]func(t *testing.T) storage.Backend{
		"local": func(t *testing.T) storage.Backend {
			b, err := storage.NewLocal(t.TempDir())
			require.NoError(t, err)
			return b
		},
		"s3": func(t *testing.T) storage.Backend { return s3test.Start(t).NewBucket(t) },
	}
}

// RFC 9110 range and conditional semantics, on every backend.
func TestRFC9110(t *testing.T) {
	for name, newBackend := range backends(t) {
		t.Run(name, func(t *testing.T) {
			f := newOrigin(t, serve.Config{}, newBackend(t))
			size := len(f.original)
			orig := "/" + f.origKey
			etag := `"` + f.origHash + `"`
			full := f.do(t, "GET", orig)
			require.Equal(t, http.StatusOK, full.status)
			lastMod := full.header.Get("Last-Modified")
			require.NotEmpty(t, lastMod)

			for _, c := range []struct {
				name     string
				method   string
				header   []string
				status   int
				from, to int // expected body f.original[from:to]
				crange   string
			}{
				{"whole", "GET", nil, 200, 0, size, ""},
				{"first 100 bytes", "GET", []string{"Range", "bytes=0-99"}, 206, 0, 100, fmt.Sprintf("bytes 0-99/%d", size)},
				{"1 MiB range", "GET", []string{"Range", "bytes=1048576-2097151"}, 206, 1 << 20, 2 << 20, fmt.Sprintf("bytes 1048576-2097151/%d", size)},
				{"suffix", "GET", []string{"Range", "bytes=-500"}, 206, size - 500, size, fmt.Sprintf("bytes %d-%d/%d", size-500, size-1, size)},
				{"open", "GET", []string{"Range", "bytes=3000000-"}, 206, 3000000, size, fmt.Sprintf("bytes 3000000-%d/%d", size-1, size)},
				{"end past size", "GET", []string{"Range", fmt.Sprintf("bytes=%d-99999999", size-10)}, 206, size - 10, size, fmt.Sprintf("bytes %d-%d/%d", size-10, size-1, size)},
				{"invalid: ignored", "GET", []string{"Range", "bytes=9-2"}, 200, 0, size, ""},
				{"other unit: ignored", "GET", []string{"Range", "items=0-9"}, 200, 0, size, ""},
				{"two ranges: whole body", "GET", []string{"Range", "bytes=0-9,100-109"}, 200, 0, size, ""},
				{"overlapping ranges merge", "GET", []string{"Range", "bytes=0-9,5-19"}, 206, 0, 20, fmt.Sprintf("bytes 0-19/%d", size)},
				{"If-Range matches", "GET", []string{"Range", "bytes=0-9", "If-Range", etag}, 206, 0, 10, fmt.Sprintf("bytes 0-9/%d", size)},
				{"If-Range differs", "GET", []string{"Range", "bytes=0-9", "If-Range", `"other"`}, 200, 0, size, ""},
				{"If-Range date", "GET", []string{"Range", "bytes=0-9", "If-Range", lastMod}, 206, 0, 10, fmt.Sprintf("bytes 0-9/%d", size)},
				{"HEAD", "HEAD", nil, 200, 0, 0, ""},
				{"HEAD with Range is 200", "HEAD", []string{"Range", "bytes=0-9"}, 200, 0, 0, ""},
			} {
				t.Run(c.name, func(t *testing.T) {
					r := f.do(t, c.method, orig, c.header...)
					require.Equal(t, c.status, r.status, "body: %.200s", r.body)
					assert.Equal(t, "bytes", r.header.Get("Accept-Ranges"))
					assert.Equal(t, etag, r.header.Get("ETag"), "the content hash is the strong ETag")
					assert.Equal(t, "audio/mpeg", r.header.Get("Content-Type"))
					assert.Equal(t, "public, max-age=31536000, immutable", r.header.Get("Cache-Control"))
					assert.Equal(t, c.crange, r.header.Get("Content-Range"))
					if c.method == "HEAD" {
						assert.Empty(t, r.body)
						assert.Equal(t, strconv.Itoa(size), r.header.Get("Content-Length"), "HEAD has GET's length")
						return
					}
					assert.Equal(t, strconv.Itoa(c.to-c.from), r.header.Get("Content-Length"))
					assert.True(t, bytes.Equal(f.original[c.from:c.to], r.body), "body bytes %d-%d", c.from, c.to)
				})
			}

			// HEAD carries exactly GET's headers.
			head := f.do(t, "HEAD", orig)
			for _, h := range []string{"Content-Type", "Content-Length", "ETag", "Last-Modified", "Cache-Control", "Accept-Ranges"} {
				assert.Equal(t, full.header.Get(h), head.header.Get(h), h)
			}

			for _, c := range []struct {
				name   string
				header []string
				status int
			}{
				{"unsatisfiable", []string{"Range", fmt.Sprintf("bytes=%d-", size)}, 416},
				{"If-None-Match", []string{"If-None-Match", etag}, 304},
				{"If-None-Match weak", []string{"If-None-Match", "W/" + etag}, 304},
				{"If-None-Match other", []string{"If-None-Match", `"nope"`}, 200},
				{"If-Modified-Since now", []string{"If-Modified-Since", time.Now().UTC().Add(time.Minute).Format(http.TimeFormat)}, 304},
				{"If-Modified-Since long ago", []string{"If-Modified-Since", "Mon, 01 Jan 2001 00:00:00 GMT"}, 200},
				{"If-Match other", []string{"If-Match", `"nope"`}, 412},
			} {
				t.Run(c.name, func(t *testing.T) {
					r := f.do(t, "GET", orig, c.header...)
					require.Equal(t, c.status, r.status)
					if c.status >= 400 {
						// A refusal carries no validator a cache could keep it by.
						assert.Empty(t, r.header.Get("ETag"))
						assert.Empty(t, r.header.Get("Last-Modified"))
						assert.Equal(t, "no-store", r.header.Get("Cache-Control"))
					}
					switch c.status {
					case 416:
						assert.Equal(t, fmt.Sprintf("bytes */%d", size), r.header.Get("Content-Range"))
						assert.Equal(t, problem.ContentType, r.header.Get("Content-Type"))
					case 304:
						assert.Empty(t, r.body)
						assert.Equal(t, etag, r.header.Get("ETag"))
					}
				})
			}
		})
	}
}

func TestHLSObjects(t *testing.T) {
	f := newOrigin(t, serve.Config{PlaylistMaxAge: 30 * time.Second}, backendsLocal(t))

	seg := f.do(t, "GET", "/"+f.segKey, "Accept-Encoding", "gzip")
	require.Equal(t, http.StatusOK, seg.status)
	assert.Equal(t, "video/iso.segment", seg.header.Get("Content-Type"))
	assert.Equal(t, "public, max-age=31536000, immutable", seg.header.Get("Cache-Control"))
	assert.Empty(t, seg.header.Get("Content-Encoding"), "segments are never compressed")
	assert.Equal(t, f.segment, seg.body)

	plain := f.do(t, "GET", "/"+f.listKey)
	require.Equal(t, http.StatusOK, plain.status)
	assert.Equal(t, "application/vnd.apple.mpegurl", plain.header.Get("Content-Type"))
	assert.Equal(t, "public, max-age=30", plain.header.Get("Cache-Control"))
	assert.Equal(t, "Accept-Encoding", plain.header.Get("Vary"))
	assert.Equal(t, f.list, plain.body)

	zipped := f.do(t, "GET", "/"+f.listKey, "Accept-Encoding", "gzip, br")
	require.Equal(t, http.StatusOK, zipped.status)
	assert.Equal(t, "gzip", zipped.header.Get("Content-Encoding"))
	assert.Less(t, len(zipped.body), len(f.list)/4)
	zr, err := gzip.NewReader(bytes.NewReader(zipped.body))
	require.NoError(t, err)
	unzipped, err := io.ReadAll(zr)
	require.NoError(t, err)
	assert.Equal(t, f.list, unzipped)
	assert.NotEqual(t, plain.header.Get("ETag"), zipped.header.Get("ETag"), "each encoding has its own ETag")
	assert.Equal(t, http.StatusNotModified, f.do(t, "GET", "/"+f.listKey, "Accept-Encoding", "gzip", "If-None-Match", zipped.header.Get("ETag")).status)
	head := f.do(t, "HEAD", "/"+f.listKey, "Accept-Encoding", "gzip")
	assert.Equal(t, zipped.header.Get("Content-Length"), head.header.Get("Content-Length"))
}

func backendsLocal(t *testing.T) storage.Backend {
	b, err := storage.NewLocal(t.TempDir(), storage.KeepOpen(16)) // as the origin runs
	t.Cleanup(func() { b.Close() })
	require.NoError(t, err)
	return b
}

func TestRefusals(t *testing.T) {
	f := newOrigin(t, serve.Config{}, backendsLocal(t))
	for _, c := range []struct {
		path   string
		status int
		typ    string
	}{
		{"/tracks/" + trackID + "/missing.mp3", 404, "not-found"},
		{"/etc/passwd", 404, "not-found"},
		{"/uploads/x/y", 404, "not-found"},
		{"/tracks/" + trackID + "/", 400, "invalid-parameter"},
		{"/tracks/..%2f..%2fetc/passwd", 400, "invalid-parameter"},
		{"/tracks/%2e%2e/%2e%2e/etc/passwd", 400, "invalid-parameter"},
		{"/tracks/a%00.mp3", 400, "invalid-parameter"},
		{"/tracks/a%5c..%5cb", 400, "invalid-parameter"},
		{"/hls/" + trackID, 404, "not-found"}, // a directory: no listing
	} {
		t.Run(c.path, func(t *testing.T) {
			r := f.do(t, "GET", c.path)
			require.Equal(t, c.status, r.status, "body %s", r.body)
			assert.Equal(t, "no-store", r.header.Get("Cache-Control"), "a CDN must never pin a miss")
			assert.Equal(t, "*", r.header.Get("Access-Control-Allow-Origin"), "CORS on errors too")
			var p problem.Problem
			require.NoError(t, json.Unmarshal(r.body, &p))
			assert.Equal(t, problem.TypeBase+c.typ, p.Type)
		})
	}
	r := f.do(t, "DELETE", "/"+f.origKey)
	assert.Equal(t, http.StatusMethodNotAllowed, r.status)
}

func TestCORS(t *testing.T) {
	f := newOrigin(t, serve.Config{CORSOrigins: []string{"https://player.example"}}, backendsLocal(t))
	r := f.do(t, "GET", "/"+f.origKey, "Origin", "https://player.example", "Range", "bytes=0-0")
	assert.Equal(t, "https://player.example", r.header.Get("Access-Control-Allow-Origin"))
	assert.Contains(t, r.header.Get("Vary"), "Origin")
	for _, h := range []string{"Content-Length", "Content-Range", "Accept-Ranges", "ETag"} {
		assert.Contains(t, r.header.Get("Access-Control-Expose-Headers"), h)
	}
	r = f.do(t, "GET", "/"+f.origKey, "Origin", "https://evil.example", "Range", "bytes=0-0")
	assert.Empty(t, r.header.Get("Access-Control-Allow-Origin"))

	// A playlist varies by encoding too: a CDN that keeps it must not
	// hand one origin's answer to another.
	r = f.do(t, "GET", "/"+f.listKey, "Origin", "https://player.example", "Accept-Encoding", "gzip")
	assert.Equal(t, "https://player.example", r.header.Get("Access-Control-Allow-Origin"))
	assert.ElementsMatch(t, []string{"Origin", "Accept-Encoding"}, r.header.Values("Vary"))

	pre := f.do(t, "OPTIONS", "/"+f.segKey, "Origin", "https://player.example",
		"Access-Control-Request-Method", "GET", "Access-Control-Request-Headers", "range")
	assert.Equal(t, http.StatusNoContent, pre.status)
	assert.Contains(t, pre.header.Get("Access-Control-Allow-Headers"), "Range")
	assert.Contains(t, pre.header.Get("Access-Control-Allow-Methods"), "GET")
}

func TestDownloadDisposition(t *testing.T) {
	f := newOrigin(t, serve.Config{}, backendsLocal(t))
	r := f.do(t, "GET", "/"+f.origKey+"?download=My%20Song.mp3")
	require.Equal(t, http.StatusOK, r.status)
	assert.Equal(t, `attachment; filename="My Song.mp3"`, r.header.Get("Content-Disposition"))
}

// SPEC §5.4 ORIGIN_AUTH=token: the origin verifies as the edge would.
func TestTokenAuth(t *testing.T) {
	key := []byte("origin-token-key-0123456789")
	previous := []byte("origin-previous-key-0123456")
	verifier, err := token.NewBunny(token.BunnyHMAC, originURL, key, previous)
	require.NoError(t, err)
	f := newOrigin(t, serve.Config{Auth: serve.AuthToken, Verifier: verifier}, backendsLocal(t))
	now := time.Now()
	sign := func(k []byte, r token.Request) string {
		s, err := token.New(token.Config{Provider: "origin", BaseURL: originURL, Key: k})
		require.NoError(t, err)
		if r.Expires == 0 {
			r.Expires = now.Add(time.Hour).Unix()
		}
		u, err := s.AppendURL(nil, &r)
		require.NoError(t, err)
		return strings.TrimPrefix(string(u), originURL)
	}
	dir := "/hls/" + trackID + "/p1/"
	pathForm := sign(key, token.Request{Path: dir + "master.m3u8", TokenPath: dir, PathForm: true})
	tokenPrefix := strings.TrimSuffix(pathForm, dir+"master.m3u8")
	sibling := sign(key, token.Request{Path: "/hls/" + trackID[:len(trackID)-1] + "/x", TokenPath: "/hls/" + trackID[:len(trackID)-1], PathForm: true})
	siblingPrefix := strings.TrimSuffix(sibling, "/hls/"+trackID[:len(trackID)-1]+"/x")

	for _, c := range []struct {
		name, uri string
		status    int
		body      []byte
	}{
		{"query form", sign(key, token.Request{Path: "/" + f.origKey}), 200, f.original},
		{"path form, segment below token_path", tokenPrefix + "/" + f.segKey, 200, f.segment},
		{"path form, playlist", tokenPrefix + "/" + f.listKey, 200, f.list},
		{"previous key", sign(previous, token.Request{Path: "/" + f.origKey}), 200, f.original},
		{"expired", sign(key, token.Request{Path: "/" + f.origKey, Expires: now.Add(-time.Second).Unix()}), 403, nil},
		{"wrong key", sign([]byte("some-other-key-0123456789"), token.Request{Path: "/" + f.origKey}), 403, nil},
		{"tampered path", strings.Replace(sign(key, token.Request{Path: "/" + f.origKey}), "tracks/", "tracks//", 1), 403, nil},
		{"no token", "/" + f.origKey, 403, nil},
		{"token_path not on a / boundary", siblingPrefix + "/" + f.segKey, 403, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := f.do(t, "GET", c.uri)
			require.Equal(t, c.status, r.status, "uri %s body %.200s", c.uri, r.body)
			if c.body != nil {
				assert.True(t, bytes.Equal(c.body, r.body))
			} else {
				assert.Equal(t, "no-store", r.header.Get("Cache-Control"))
			}
		})
	}
}

func TestHeaderAuth(t *testing.T) {
	f := newOrigin(t, serve.Config{Auth: serve.AuthHeader, SecretHeader: "X-Origin-Secret", Secret: []byte("the-pull-zone-secret")}, backendsLocal(t))
	assert.Equal(t, http.StatusForbidden, f.do(t, "GET", "/"+f.origKey).status)
	assert.Equal(t, http.StatusForbidden, f.do(t, "GET", "/"+f.origKey, "X-Origin-Secret", "the-pull-zone-secreT").status)
	assert.Equal(t, http.StatusOK, f.do(t, "GET", "/"+f.origKey, "X-Origin-Secret", "the-pull-zone-secret").status)
}

// During a migration between backends, an object missing from the
// configured one is served from the other.
func TestFallbackBackend(t *testing.T) {
	primary, other := backendsLocal(t), backendsLocal(t)
	f := newOrigin(t, serve.Config{}, primary, other)
	key := "tracks/" + trackID + "/" + strings.Repeat("cd", 32) + ".flac"
	_, err := other.Put(ctx, key, strings.NewReader("only in the old backend"), "")
	require.NoError(t, err)
	r := f.do(t, "GET", "/"+key)
	require.Equal(t, http.StatusOK, r.status)
	assert.Equal(t, "only in the old backend", string(r.body))
	assert.Equal(t, "audio/flac", r.header.Get("Content-Type"))
}

func TestMetrics(t *testing.T) {
	f := newOrigin(t, serve.Config{}, backendsLocal(t))
	// Written behind the backend's back, so that its first read opens it.
	direct := "hls/" + trackID + "/p1/128k/0123456789abcdef0123456789abcdef.m4s"
	dir := f.backend.(*storage.Local).Dir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, direct), []byte("segment"), 0o644))

	f.do(t, "GET", "/"+f.origKey, "Range", "bytes=0-99")
	f.do(t, "GET", "/"+f.segKey)
	f.do(t, "GET", "/"+direct)
	f.do(t, "HEAD", "/"+direct)
	r := f.do(t, "GET", "/metrics")
	require.Equal(t, http.StatusOK, r.status)
	body := string(r.body)
	assert.Contains(t, body, `playgate_origin_requests_total{route="object",status="206"} 1`)
	assert.Contains(t, body, `playgate_origin_requests_total{route="object",status="200"} 3`)
	assert.Contains(t, body, `playgate_origin_range_requests_total 1`)
	// Each request timed once, those with a streamed body (through
	// sendfile here) when fasthttp closed it, which may follow the
	// client's last read.
	assert.Eventually(t, func() bool {
		count, _ := requestDurations(t, f.metrics)
		return count == 4
	}, 5*time.Second, 10*time.Millisecond)
	assert.Contains(t, body, `playgate_origin_served_bytes_total{backend="local"} 100107`)
	assert.Contains(t, body, `playgate_origin_storage_duration_seconds_bucket{backend="local",le=`)
	// Put keeps what it wrote open (it reads its status back); the direct
	// file is opened by the first GET and kept for the HEAD.
	assert.Contains(t, body, `playgate_origin_local_files_total{descriptor="opened"} 1`)
	assert.Contains(t, body, `playgate_origin_local_files_total{descriptor="kept"} 3`)
	assert.Contains(t, body, `playgate_origin_local_kept_files 4`)
}

// A request lasts until its body is sent, as nginx's $request_time does:
// the origin streams bodies after its handler returns, and a duration
// that ended there would show a slow client, or a slow bucket, as a fast
// origin.
func TestRequestDurationCoversTheBody(t *testing.T) {
	for name, newBackend := range backends(t) {
		t.Run(name, func(t *testing.T) {
			b := newBackend(t)
			key := "hls/" + trackID + "/p1/128k/" + strings.Repeat("ab", 16) + ".m4s"
			_, err := b.Put(ctx, key, bytes.NewReader(randomBytes(100_000)), "")
			require.NoError(t, err)
			set := metrics.NewSet()
			srv, err := serve.New(serve.Config{Auth: serve.AuthNone, CORSOrigins: []string{"*"}}, []storage.Backend{b},
				slog.New(slog.NewTextHandler(io.Discard, nil)), set)
			require.NoError(t, err)
			handle := func(method, path string) *fasthttp.RequestCtx {
				var rc fasthttp.RequestCtx
				rc.Request.Header.SetMethod(method)
				rc.Request.SetRequestURI(path)
				srv.Handler()(&rc)
				return &rc
			}

			get := handle("GET", "/"+key)
			require.Equal(t, http.StatusOK, get.Response.StatusCode())
			require.True(t, get.Response.IsBodyStream())
			count, _ := requestDurations(t, set)
			assert.Zero(t, count, "timed before the body was sent")
			const client = 100 * time.Millisecond // a slow reader
			time.Sleep(client)
			n, err := get.Response.WriteTo(io.Discard) // sends, then closes the body
			require.NoError(t, err)
			require.Greater(t, n, int64(100_000))
			count, sum := requestDurations(t, set)
			assert.Equal(t, 1, count)
			assert.GreaterOrEqual(t, sum, client.Seconds())

			// Answers without a streamed body are timed when built.
			assert.Equal(t, http.StatusOK, handle("HEAD", "/"+key).Response.StatusCode())
			assert.Equal(t, http.StatusNotFound, handle("GET", "/hls/"+trackID+"/missing.m4s").Response.StatusCode())
			count, _ = requestDurations(t, set)
			assert.Equal(t, 3, count)
		})
	}
}

// requestDurations reads the origin's request duration histogram.
func requestDurations(t *testing.T, set *metrics.Set) (count int, sum float64) {
	t.Helper()
	var out bytes.Buffer
	set.WritePrometheus(&out)
	for line := range strings.Lines(out.String()) {
		if v, ok := strings.CutPrefix(line, `playgate_origin_request_duration_seconds_count{route="object"} `); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			require.NoError(t, err)
			count = n
		}
		if v, ok := strings.CutPrefix(line, `playgate_origin_request_duration_seconds_sum{route="object"} `); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			require.NoError(t, err)
			sum = f
		}
	}
	return count, sum
}

// countingHTTP counts the requests an S3 client sends, by method.
type countingHTTP struct {
	inner s3.HTTPClient
	mu    sync.Mutex
	sent  map[string]int
}

func (c *countingHTTP) Do(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.sent[r.Method]++
	c.mu.Unlock()
	return c.inner.Do(r)
}

func (c *countingHTTP) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	sent := c.sent
	c.sent = map[string]int{}
	return sent
}

// A CDN filling its cache asks for whole objects without validators:
// from S3 that costs one GET, not a HEAD and a GET. Ranges and
// validators still describe the object first.
func TestS3RequestsPerPull(t *testing.T) {
	bucket := s3test.Start(t).NewBucket(t)
	counter := &countingHTTP{inner: bucket.Client().Options().HTTPClient, sent: map[string]int{}}
	counted, err := storage.NewS3(s3.New(bucket.Client().Options(), func(o *s3.Options) { o.HTTPClient = counter }), bucket.Bucket(), 5<<20)
	require.NoError(t, err)
	f := newOrigin(t, serve.Config{}, counted)
	counter.take() // the fixture's uploads

	for _, c := range []struct {
		name   string
		method string
		header []string
		status int
		want   map[string]int
		from   int // a 206's first byte, and one past its last
		to     int
	}{
		{"whole segment", "GET", nil, http.StatusOK, map[string]int{"GET": 1}, 0, 0},
		{"a range", "GET", []string{"Range", "bytes=1000-1099"}, http.StatusPartialContent, map[string]int{"GET": 1}, 1000, 1100},
		{"a range past the end", "GET", []string{"Range", "bytes=99990-200000"}, http.StatusPartialContent, map[string]int{"GET": 1}, 99990, 100000},
		{"from an offset", "GET", []string{"Range", "bytes=99000-"}, http.StatusPartialContent, map[string]int{"GET": 1}, 99000, 100000},
		{"from the start", "GET", []string{"Range", "bytes=0-"}, http.StatusPartialContent, map[string]int{"GET": 1}, 0, 100000},
		// The 416 names the size, which the refused GET did not give.
		{"a range after the end", "GET", []string{"Range", "bytes=100000-"}, http.StatusRequestedRangeNotSatisfiable, map[string]int{"GET": 1, "HEAD": 1}, 0, 0},
		// These need the size to know which bytes they mean.
		{"a suffix", "GET", []string{"Range", "bytes=-100"}, http.StatusPartialContent, map[string]int{"HEAD": 1, "GET": 1}, 99900, 100000},
		{"two ranges", "GET", []string{"Range", "bytes=0-9,20-29"}, http.StatusOK, map[string]int{"HEAD": 1, "GET": 1}, 0, 0},
		{"a validator", "GET", []string{"If-None-Match", `"nope"`}, http.StatusOK, map[string]int{"HEAD": 1, "GET": 1}, 0, 0},
		{"revalidation", "GET", []string{"If-None-Match", `"` + f.segKey[len(f.segKey)-36:len(f.segKey)-4] + `"`}, http.StatusNotModified, map[string]int{"HEAD": 1}, 0, 0},
		{"HEAD", "HEAD", nil, http.StatusOK, map[string]int{"HEAD": 1}, 0, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := f.do(t, c.method, "/"+f.segKey, c.header...)
			require.Equal(t, c.status, r.status, "%s", r.body)
			if c.status == http.StatusPartialContent {
				assert.Equal(t, fmt.Sprintf("bytes %d-%d/100000", c.from, c.to-1), r.header.Get("Content-Range"))
				assert.Equal(t, f.segment[c.from:c.to], r.body)
				assert.Equal(t, strconv.Itoa(c.to-c.from), r.header.Get("Content-Length"))
			}
			if c.status == http.StatusRequestedRangeNotSatisfiable {
				assert.Equal(t, "bytes */100000", r.header.Get("Content-Range"))
			}
			if c.status == http.StatusOK && c.method == "GET" {
				assert.Equal(t, f.segment, r.body)
				assert.Equal(t, strconv.Itoa(len(f.segment)), r.header.Get("Content-Length"))
				assert.Equal(t, "public, max-age=31536000, immutable", r.header.Get("Cache-Control"))
				assert.NotEmpty(t, r.header.Get("ETag"))
				assert.NotEmpty(t, r.header.Get("Last-Modified"))
			}
			assert.Equal(t, c.want, counter.take())
		})
	}

	// Not in the first backend: the whole-object GET misses, and the
	// second backend serves it.
	other := backendsLocal(t)
	g := newOrigin(t, serve.Config{}, counted, other)
	key := "tracks/" + trackID + "/" + strings.Repeat("ef", 32) + ".mp3"
	_, err = other.Put(ctx, key, strings.NewReader("migrated"), "")
	require.NoError(t, err)
	r := g.do(t, "GET", "/"+key)
	require.Equal(t, http.StatusOK, r.status)
	assert.Equal(t, "migrated", string(r.body))
}

// A bucket that takes requests and never answers does not hold the
// origin's requests: they end in 503 after StorageTimeout, whether the
// object is read at once (a whole pull) or described first (a suffix).
func TestSilentBucketTimesOut(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var held sync.WaitGroup
	t.Cleanup(func() { ln.Close(); held.Wait() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held.Go(func() { _, _ = io.Copy(io.Discard, c); c.Close() })
		}
	}()
	client, err := storage.NewS3Client(ctx, storage.S3Config{Endpoint: "http://" + ln.Addr().String(), Bucket: "silent",
		Region: "us-east-1", AccessKeyID: "k", SecretAccessKey: "s", ForcePathStyle: true, PartSize: 5 << 20})
	require.NoError(t, err)
	silent, err := storage.NewS3(client, "silent", 5<<20)
	require.NoError(t, err)
	srv, err := serve.New(serve.Config{Auth: serve.AuthNone, CORSOrigins: []string{"*"}, StorageTimeout: 300 * time.Millisecond},
		[]storage.Backend{silent}, slog.New(slog.NewTextHandler(io.Discard, nil)), metrics.NewSet())
	require.NoError(t, err)
	sln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = ops.Serve(sctx, srv.HTTPServer(), srv.Listener(sln), time.Second); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	// Without the bound the request would hang: fail instead.
	impatient := &http.Client{Timeout: 10 * time.Second}
	url := "http://" + sln.Addr().String() + "/hls/" + trackID + "/p1/128k/0123456789abcdef0123456789abcdef.m4s"
	for _, rangeHeader := range []string{"", "bytes=-100"} {
		req, err := http.NewRequest("GET", url, nil)
		require.NoError(t, err)
		if rangeHeader != "" {
			req.Header.Set("Range", rangeHeader)
		}
		resp, err := impatient.Do(req)
		require.NoError(t, err, "Range %q", rangeHeader)
		resp.Body.Close()
		assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "Range %q", rangeHeader)
		assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
	}
}
