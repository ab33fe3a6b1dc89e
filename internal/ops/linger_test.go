package ops

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lingerPair accepts one connection through a LingeringListener.
func lingerPair(t *testing.T, timeout time.Duration) (server, client net.Conn) {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ln := LingeringListener(inner, timeout)
	t.Cleanup(func() { ln.Close() })
	client, err = net.Dial("tcp", inner.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { client.Close() })
	server, err = ln.Accept()
	require.NoError(t, err)
	return server, client
}

// A server that answers and closes while the client is still sending
// (an upload it refused) does not reset the connection: the client reads
// the whole answer, then the end of the stream.
func TestLingeringCloseKeepsTheAnswer(t *testing.T) {
	server, client := lingerPair(t, 5*time.Second)
	sent := make(chan error, 1)
	go func() {
		_, err := client.Write(make([]byte, 16<<20)) // more than the socket buffers hold
		sent <- err
	}()
	buf := make([]byte, 1000)
	_, err := io.ReadFull(server, buf) // the request's head
	require.NoError(t, err)
	_, err = server.Write([]byte("HTTP/1.1 413 Content Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"))
	require.NoError(t, err)

	closed := make(chan error, 1)
	go func() { closed <- server.Close() }()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited for the client")
	}
	assert.ErrorIs(t, server.Close(), net.ErrClosed)

	require.NoError(t, <-sent, "the client could send its whole body")
	require.NoError(t, client.SetReadDeadline(time.Now().Add(10*time.Second)))
	answer, err := io.ReadAll(client)
	require.NoError(t, err, "no reset")
	assert.Contains(t, string(answer), "413 Content Too Large")
}

// A client that neither sends nor closes is let go after the timeout:
// the connection is then closed for good.
func TestLingeringCloseEnds(t *testing.T) {
	server, client := lingerPair(t, 200*time.Millisecond)
	require.NoError(t, server.Close())
	require.NoError(t, client.SetReadDeadline(time.Now().Add(5*time.Second)))
	n, err := client.Read(make([]byte, 1))
	assert.Equal(t, 0, n)
	assert.ErrorIs(t, err, io.EOF, "the server's half-close arrives at once")

	require.Eventually(t, func() bool {
		// Once the server has really closed, a write is answered with a
		// reset, which the next write reports.
		_, err1 := client.Write([]byte("x"))
		time.Sleep(10 * time.Millisecond)
		_, err2 := client.Write([]byte("x"))
		return err1 != nil || err2 != nil
	}, 5*time.Second, 50*time.Millisecond)
}
