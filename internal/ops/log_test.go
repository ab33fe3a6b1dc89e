package ops

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
)

// lines hands over what is written to it a line at a time.
type lines chan string

func (l lines) Write(p []byte) (int, error) {
	l <- string(p)
	return len(p), nil
}

// What fasthttp reports itself, here a connection turned away at the
// Concurrency limit, is a JSON line of the service's log.
func TestFastHTTPLog(t *testing.T) {
	out := make(lines, 16)
	log, err := NewLogger(out, "info")
	require.NoError(t, err)
	srv := &fasthttp.Server{
		Handler:     func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") },
		Concurrency: 1,
		Logger:      FastHTTPLog(log),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })

	get := func() (net.Conn, *http.Response) {
		c, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
		_, err = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err)
		return c, resp
	}
	_, held := get() // kept alive: it holds the only slot
	require.Equal(t, http.StatusOK, held.StatusCode)
	_, over := get()
	require.Equal(t, http.StatusServiceUnavailable, over.StatusCode)

	select {
	case line := <-out:
		var entry map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &entry), "line %q", line)
		assert.Equal(t, "WARN", entry["level"])
		assert.Equal(t, "fasthttp", entry["from"])
		assert.Contains(t, entry["msg"], "1 concurrent connections are served")
	case <-time.After(5 * time.Second):
		t.Fatal("nothing logged")
	}
}
