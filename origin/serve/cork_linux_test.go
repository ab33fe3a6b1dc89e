package serve

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"

	"github.com/VictoriaMetrics/metrics"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/playgate/playgate/origin/storage"
)

// recordingListener keeps the server's side of every connection.
type recordingListener struct {
	net.Listener
	mu    sync.Mutex
	conns []*net.TCPConn
}

func (l *recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		l.mu.Lock()
		l.conns = append(l.conns, tc)
		l.mu.Unlock()
	}
	return c, err
}

func corked(t *testing.T, c *net.TCPConn) int {
	raw, err := c.SyscallConn()
	require.NoError(t, err)
	var v int
	var gerr error
	require.NoError(t, raw.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_CORK) }))
	require.NoError(t, gerr)
	return v
}

// A body sent with sendfile is corked while it is written and uncorked
// once it is out: a connection left corked would hold the next answer's
// last segment for 200 ms.
func TestCorkIsReleased(t *testing.T) {
	b, err := storage.NewLocal(t.TempDir())
	require.NoError(t, err)
	segment := bytes.Repeat([]byte("0123456789abcdef"), 100_000/16)
	key := "hls/0190a0b4-0000-7000-8000-000000000001/p1/128k/" + fmt.Sprintf("%032x", 7) + ".m4s"
	_, err = b.Put(context.Background(), key, bytes.NewReader(segment), "")
	require.NoError(t, err)
	srv, err := New(Config{Auth: AuthNone, CORSOrigins: []string{"*"}}, []storage.Backend{b},
		slog.New(slog.NewTextHandler(io.Discard, nil)), metrics.NewSet())
	require.NoError(t, err)
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ln := &recordingListener{Listener: inner}
	hs := srv.HTTPServer()
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { _ = hs.Shutdown() })

	c, err := net.Dial("tcp", inner.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	br := bufio.NewReader(c)
	for _, r := range []struct {
		header   string
		wantBody int
	}{
		{"", len(segment)},                  // sendfile, corked
		{"Range: bytes=0-99\r\n", 100},      // small: no cork
		{"Range: bytes=0-65535\r\n", 65536}, // sendfile again
	} {
		_, err = fmt.Fprintf(c, "GET /%s HTTP/1.1\r\nHost: origin\r\n%s\r\n", key, r.header)
		require.NoError(t, err)
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		assert.Len(t, body, r.wantBody)
		ln.mu.Lock()
		require.Len(t, ln.conns, 1)
		server := ln.conns[0]
		ln.mu.Unlock()
		assert.Equal(t, 0, corked(t, server), "the connection is uncorked once the body is out")
	}
}

func TestCorkSetsAndClears(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	uncork := cork(c)
	require.NotNil(t, uncork)
	assert.Equal(t, 1, corked(t, c.(*net.TCPConn)))
	uncork()
	assert.Equal(t, 0, corked(t, c.(*net.TCPConn)))

	a, z := net.Pipe()
	defer a.Close()
	defer z.Close()
	assert.Nil(t, cork(a), "only TCP connections can be corked")
}
