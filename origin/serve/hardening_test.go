package serve_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/playgate/playgate/internal/problem"
	"github.com/playgate/playgate/origin/serve"
	"github.com/playgate/playgate/origin/storage"
)

// exchange sends a raw request on a connection of its own and reads the
// answer to it.
func exchange(t *testing.T, addr, request string) *http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = io.WriteString(c, request)
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func requireProblem(t *testing.T, resp *http.Response, status int, typ problem.Type) {
	t.Helper()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, status, resp.StatusCode, "body %s", body)
	assert.Equal(t, problem.ContentType, resp.Header.Get("Content-Type"))
	var p problem.Problem
	require.NoError(t, json.Unmarshal(body, &p), "body %s", body)
	assert.Equal(t, problem.TypeBase+string(typ), p.Type)
	// As every other error of the origin's: a CDN keeps none, and a web
	// player can read it.
	assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
	assert.Equal(t, "*", resp.Header.Get("Access-Control-Allow-Origin"))
}

// What fasthttp refuses before the origin's handler sees a request: the
// bounds of an origin on the open internet, answered as the origin's own
// errors are.
func TestRequestBounds(t *testing.T) {
	f := newOrigin(t, serve.Config{}, backendsLocal(t))
	addr := strings.TrimPrefix(f.base, "http://")
	get := "GET /" + f.segKey + " HTTP/1.1\r\nHost: origin.test\r\n"

	t.Run("headers within 8 KiB", func(t *testing.T) {
		resp := exchange(t, addr, get+"X-Pad: "+strings.Repeat("a", 7<<10)+"\r\n\r\n")
		assert.Equal(t, http.StatusOK, resp.StatusCode)
	})
	t.Run("headers beyond 8 KiB", func(t *testing.T) {
		resp := exchange(t, addr, get+"X-Pad: "+strings.Repeat("a", 9<<10)+"\r\n\r\n")
		requireProblem(t, resp, http.StatusRequestHeaderFieldsTooLarge, problem.TooLarge)
		assert.True(t, resp.Close, "the connection is not reused")
	})
	t.Run("a request body", func(t *testing.T) {
		resp := exchange(t, addr, get+"Content-Length: 2048\r\n\r\n"+strings.Repeat("a", 2048))
		requireProblem(t, resp, http.StatusRequestEntityTooLarge, problem.TooLarge)
	})
	t.Run("a malformed request", func(t *testing.T) {
		resp := exchange(t, addr, "GET /"+f.segKey+" HTTP/1.1\r\nHost: origin.test\r\nContent-Length: x\r\n\r\n")
		requireProblem(t, resp, http.StatusBadRequest, problem.InvalidBody)
	})

	// An operator sees them: counted as route "refused", not timed.
	var out strings.Builder
	f.metrics.WritePrometheus(&out)
	for _, status := range []string{"431", "413", "400"} {
		assert.Contains(t, out.String(), `playgate_origin_requests_total{route="refused",status="`+status+`"} 1`+"\n")
	}
	assert.NotContains(t, out.String(), `route="refused"} `, "no duration")
}

// ORIGIN_MAX_CONNS: a connection beyond the limit is answered 503 and
// closed at once, and the slot of one that ends is free again.
func TestConnectionLimit(t *testing.T) {
	f := newOrigin(t, serve.Config{MaxConns: 1}, backendsLocal(t))
	addr := strings.TrimPrefix(f.base, "http://")
	request := "GET /" + f.segKey + " HTTP/1.1\r\nHost: origin.test\r\n\r\n"

	held, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	_, err = io.WriteString(held, request)
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(held), nil)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.False(t, resp.Close, "kept alive: it holds the only slot")

	over := exchange(t, addr, request)
	assert.Equal(t, http.StatusServiceUnavailable, over.StatusCode)
	assert.True(t, over.Close)

	held.Close()
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return false
		}
		defer c.Close()
		_, _ = io.WriteString(c, request)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		return err == nil && resp.StatusCode == http.StatusOK
	}, 5*time.Second, 20*time.Millisecond, "the slot of a closed connection is reused")
}

// The timeouts that keep a slow or silent client from holding a
// connection: fasthttp enforces them, the origin must set them.
func TestServerTimeouts(t *testing.T) {
	b, err := storage.NewLocal(t.TempDir())
	require.NoError(t, err)
	s, err := serve.New(serve.Config{Auth: serve.AuthNone, CORSOrigins: []string{"*"}, WriteTimeout: time.Minute},
		[]storage.Backend{b}, slog.New(slog.NewTextHandler(io.Discard, nil)), metrics.NewSet())
	require.NoError(t, err)
	srv := s.HTTPServer()
	assert.Equal(t, 15*time.Second, srv.ReadTimeout, "the request line and headers")
	assert.Equal(t, 2*time.Minute, srv.IdleTimeout, "between requests on a kept connection")
	assert.Equal(t, time.Minute, srv.WriteTimeout, "ORIGIN_WRITE_TIMEOUT")
}

// panickyBackend finds objects but fails reading them, in the worst way.
type panickyBackend struct{ storage.Backend }

func (panickyBackend) Name() string { return "s3" }

func (panickyBackend) Open(context.Context, string, int64, int64) (io.ReadCloser, storage.Object, error) {
	panic("a bug in the backend")
}

// A handler that fails after it has described its answer (how long to
// cache it, its validators) answers a 500 that no CDN keeps in the
// object's place.
func TestPanicMidAnswerIsNotCacheable(t *testing.T) {
	f := newOrigin(t, serve.Config{}, panickyBackend{backendsLocal(t)})
	// A validator makes the origin describe the object (Stat) before it
	// opens it.
	r := f.do(t, "GET", "/"+f.origKey, "If-None-Match", `"other"`)
	require.Equal(t, http.StatusInternalServerError, r.status, "body %s", r.body)
	assert.Equal(t, "no-store", r.header.Get("Cache-Control"))
	for _, name := range []string{"ETag", "Last-Modified"} {
		assert.Empty(t, r.header.Get(name), name)
	}
	assert.Equal(t, "*", r.header.Get("Access-Control-Allow-Origin"), "a web player reads it")
	var p problem.Problem
	require.NoError(t, json.Unmarshal(r.body, &p))
	assert.Equal(t, problem.TypeBase+string(problem.Internal), p.Type)
}
