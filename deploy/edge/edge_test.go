package edge_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/playgate/playgate/api/purge"
	"github.com/playgate/playgate/deploy/edge"
	"github.com/playgate/playgate/internal/ops"
	"github.com/playgate/playgate/origin/serve"
	"github.com/playgate/playgate/origin/storage"
	"github.com/playgate/playgate/signer/token"
)

const (
	key      = "current-edge-key-0123456789"
	previous = "previous-edge-key-0123456789"
	secret   = "the-origin-pull-secret"
	track    = "0190a0b4-0000-7000-8000-000000000001"
)

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

type fixture struct {
	base  string // the edge
	purge string // its purge endpoint
	pulls *atomic.Int64
	// originConns counts the connections the edge opened to the origin.
	originConns atomic.Int64
	original    []byte
	segment     []byte
}

func start(t *testing.T) *fixture {
	t.Helper()
	objects, err := storage.NewLocal(t.TempDir())
	require.NoError(t, err)
	f := &fixture{pulls: &atomic.Int64{}, original: make([]byte, 2<<20), segment: make([]byte, 50_000)}
	_, _ = rand.Read(f.original)
	_, _ = rand.Read(f.segment)
	ctx := context.Background()
	_, err = objects.Put(ctx, "tracks/"+track+"/orig.mp3", bytes.NewReader(f.original), "")
	require.NoError(t, err)
	_, err = objects.Put(ctx, "hls/"+track+"/p1/128k/seg.m4s", bytes.NewReader(f.segment), "")
	require.NoError(t, err)

	srv, err := serve.New(serve.Config{Auth: serve.AuthHeader, SecretHeader: "X-Origin-Secret", Secret: []byte(secret),
		CORSOrigins: []string{"*"}}, []storage.Backend{objects}, slog.New(slog.NewTextHandler(io.Discard, nil)), metrics.NewSet())
	require.NoError(t, err)
	handler := srv.Handler()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		_ = ops.Serve(sctx, &fasthttp.Server{
			Handler: func(c *fasthttp.RequestCtx) { f.pulls.Add(1); handler(c) },
			ConnState: func(_ net.Conn, s fasthttp.ConnState) {
				if s == fasthttp.StateNew {
					f.originConns.Add(1)
				}
			},
		}, ln, 5*time.Second)
		close(done)
	}()
	t.Cleanup(func() { cancel(); <-done })

	dir, err := os.MkdirTemp("", "playgate-edge-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	purgeAddr := freeAddr(t)
	e, err := edge.Start(dir, edge.Config{Listen: freeAddr(t), Origin: "http://" + ln.Addr().String(),
		Keys: []string{key, previous}, Secret: secret, PurgeListen: purgeAddr})
	require.NoError(t, err, "nginx with njs is needed: %s", edge.InstallHint)
	t.Cleanup(e.Stop)
	f.base = "http://" + e.Addr
	f.purge = "http://" + purgeAddr
	return f
}

func (f *fixture) sign(t *testing.T, k string, r token.Request) string {
	t.Helper()
	s, err := token.NewBunny(token.BunnyHMAC, f.base, []byte(k))
	require.NoError(t, err)
	if r.Expires == 0 {
		r.Expires = time.Now().Add(time.Hour).Unix()
	}
	u, err := s.AppendURL(nil, &r)
	require.NoError(t, err)
	return string(u)
}

func get(t *testing.T, url string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	require.NoError(t, err)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func TestEdgeVerifiesCachesAndStrips(t *testing.T) {
	f := start(t)
	orig := "/tracks/" + track + "/orig.mp3"

	u := f.sign(t, key, token.Request{Path: orig})
	resp, body := get(t, u)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	assert.Equal(t, "MISS", resp.Header.Get("X-Cache"))
	assert.True(t, bytes.Equal(f.original, body))
	pulls := f.pulls.Load()

	// A second play, and another URL for the same object (a new token):
	// both are edge hits; the origin sees nothing more.
	resp, _ = get(t, u)
	assert.Equal(t, "HIT", resp.Header.Get("X-Cache"))
	resp, body = get(t, f.sign(t, key, token.Request{Path: orig, Expires: time.Now().Add(2 * time.Hour).Unix()}), "Range", "bytes=1000-1999")
	assert.Equal(t, "HIT", resp.Header.Get("X-Cache"), "the cache key ignores the token")
	assert.Equal(t, http.StatusPartialContent, resp.StatusCode)
	assert.Equal(t, f.original[1000:2000], body, "ranges are served from the cache")
	assert.Equal(t, pulls, f.pulls.Load(), "no origin request on hits")

	// A directory token in the path opens a segment below it.
	dir := "/hls/" + track + "/p1/"
	master := f.sign(t, key, token.Request{Path: dir + "master.m3u8", TokenPath: dir, PathForm: true})
	seg := master[:strings.LastIndexByte(master, '/')+1] + "128k/seg.m4s"
	resp, body = get(t, seg)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	assert.Equal(t, f.segment, body)
}

// Misses reuse the edge's connections to the origin: a burst of fills
// after a release or a purge does not open one connection each.
func TestEdgeKeepsOriginConnections(t *testing.T) {
	f := start(t)
	orig := "/tracks/" + track + "/orig.mp3"
	for range 3 {
		resp, body := get(t, f.sign(t, key, token.Request{Path: orig}))
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
		require.Equal(t, "MISS", resp.Header.Get("X-Cache"))
		resp, _ = get(t, f.purge+"/purge"+orig)
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	assert.Equal(t, int64(3), f.pulls.Load(), "three misses")
	assert.Equal(t, int64(1), f.originConns.Load(), "over one connection")
}

func TestEdgeRefuses(t *testing.T) {
	f := start(t)
	orig := "/tracks/" + track + "/orig.mp3"
	dir := "/hls/" + track[:len(track)-1] // a prefix of the track id, not a directory of it
	sibling := f.sign(t, key, token.Request{Path: dir + "/x", TokenPath: dir, PathForm: true})
	siblingPrefix := strings.TrimSuffix(sibling, dir+"/x")
	valid := f.sign(t, key, token.Request{Path: orig})
	i := strings.Index(valid, "HS256-") + len("HS256-")
	c := byte('A')
	if valid[i] == 'A' {
		c = 'B'
	}
	tampered := valid[:i] + string(c) + valid[i+1:]

	pulls := f.pulls.Load()
	for name, u := range map[string]string{
		"no token":            f.base + orig,
		"tampered":            tampered,
		"expired":             f.sign(t, key, token.Request{Path: orig, Expires: time.Now().Add(-time.Minute).Unix()}),
		"another key":         f.sign(t, "some-unrelated-key-000000", token.Request{Path: orig}),
		"another object":      strings.Replace(valid, "orig.mp3", "other.mp3", 1),
		"not on a / boundary": siblingPrefix + "/hls/" + track + "/p1/128k/seg.m4s",
		"bound to another IP": f.sign(t, key, token.Request{Path: orig, IP: netip.MustParseAddr("192.0.2.1")}),
	} {
		resp, _ := get(t, u)
		assert.Equal(t, http.StatusForbidden, resp.StatusCode, name)
	}
	assert.Equal(t, pulls, f.pulls.Load(), "refused requests never reach the origin")

	for name, u := range map[string]string{
		"previous key":         f.sign(t, previous, token.Request{Path: orig}),
		"bound to this client": f.sign(t, key, token.Request{Path: orig, IP: netip.MustParseAddr("127.0.0.1")}),
	} {
		resp, _ := get(t, u)
		assert.Equal(t, http.StatusOK, resp.StatusCode, name)
	}
}

// Unbound tokens whose digest begins with "1-" (one in 4096) are not
// mistaken for IP-bound ones.
func TestEdgeDigestStartingWithOneDash(t *testing.T) {
	f := start(t)
	orig := "/tracks/" + track + "/orig.mp3"
	now := time.Now().Add(time.Hour).Unix()
	for exp := now; exp < now+200_000; exp++ {
		u := f.sign(t, key, token.Request{Path: orig, Expires: exp})
		if strings.Contains(u, "token=HS256-1-") {
			resp, _ := get(t, u)
			assert.Equal(t, http.StatusOK, resp.StatusCode, u)
			return
		}
	}
	t.Fatal("no digest starting with 1- found")
}

// The api's selfhosted purger empties the edge's cache for an object and
// for a whole HLS directory (expanded into its objects).
func TestEdgePurge(t *testing.T) {
	f := start(t)
	orig := f.sign(t, key, token.Request{Path: "/tracks/" + track + "/orig.mp3"})
	dir := "/hls/" + track + "/p1/"
	seg := f.sign(t, key, token.Request{Path: dir + "128k/seg.m4s", TokenPath: dir, PathForm: true})
	for _, u := range []string{orig, seg} {
		get(t, u)
		resp, _ := get(t, u)
		require.Equal(t, "HIT", resp.Header.Get("X-Cache"))
	}
	p := &purge.SelfHosted{URL: f.purge, List: func(_ context.Context, prefix string) ([]string, error) {
		require.Equal(t, "hls/"+track+"/", prefix)
		return []string{"hls/" + track + "/p1/128k/seg.m4s"}, nil
	}}
	require.NoError(t, p.Purge(context.Background(), []string{"tracks/" + track + "/orig.mp3", "hls/" + track + "/"}))
	for _, u := range []string{orig, seg} {
		resp, body := get(t, u)
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, "MISS", resp.Header.Get("X-Cache"), "purged: %s", u)
		assert.NotEmpty(t, body)
	}
	// Purging what is not cached is not an error.
	assert.NoError(t, p.Purge(context.Background(), []string{"tracks/" + track + "/never.mp3"}))
}

// A download URL gets the attachment disposition from the edge, while
// the cached object stays one copy for every URL of the object.
func TestEdgeDownloadDisposition(t *testing.T) {
	f := start(t)
	orig := "/tracks/" + track + "/orig.mp3"
	get(t, f.sign(t, key, token.Request{Path: orig}))
	resp, _ := get(t, f.sign(t, key, token.Request{Path: orig, Download: "My Song.mp3"}))
	assert.Equal(t, "HIT", resp.Header.Get("X-Cache"))
	assert.Contains(t, resp.Header.Get("Content-Disposition"), `attachment; filename="My Song.mp3"`)
	resp, _ = get(t, f.sign(t, key, token.Request{Path: orig}))
	assert.Empty(t, resp.Header.Get("Content-Disposition"), "a plain play is not an attachment")

	// Titles with what URLs escape: the edge checks the token over the
	// decoded name, as the signer signs it, and names the file so.
	for _, name := range []string{"Rock & Roll #1 50%+.mp3", "a=b;c.mp3", "日本 é.mp3"} {
		resp, _ := get(t, f.sign(t, key, token.Request{Path: orig, Download: name}))
		require.Equal(t, http.StatusOK, resp.StatusCode, name)
		_, params, err := mime.ParseMediaType(resp.Header.Get("Content-Disposition"))
		require.NoError(t, err, name)
		assert.Equal(t, name, params["filename"])
	}
}

// The origin is an address nginx's upstream block can hold: a scheme,
// a host and a port, nothing after them.
func TestRenderRefusesAnOriginThatIsNotAnAddress(t *testing.T) {
	for _, origin := range []string{"127.0.0.1:8082", "ftp://127.0.0.1:8082", "http://", "http://127.0.0.1:8082/prefix"} {
		_, err := edge.Render(t.TempDir(), edge.Config{Listen: "127.0.0.1:0", Origin: origin, Keys: []string{key}})
		assert.ErrorContains(t, err, "must be http(s)://host:port", origin)
	}
	_, err := edge.Render(t.TempDir(), edge.Config{Listen: "127.0.0.1:0", Origin: "http://127.0.0.1:8082/", Keys: []string{key}})
	assert.NoError(t, err, "a trailing slash is still just the address")
}
