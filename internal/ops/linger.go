package ops

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// LingeringListener wraps ln so that a connection the server closes
// first lets the client finish sending, as nginx's lingering_close does:
// the server's side half-closes (the client reads the answer, then end of
// stream), and what the client still sends is read and thrown away until
// it closes too, or for at most timeout. A socket closed with unread
// input is reset by the kernel, and the reset can destroy an answer the
// client has not read yet: a 413 refusing an upload too large for
// fasthttp to discard was seen as "connection reset by peer".
//
// The lingering runs on a goroutine of its own, so that closing returns
// at once, as fasthttp expects when it closes idle connections on
// shutdown.
func LingeringListener(ln net.Listener, timeout time.Duration) net.Listener {
	return lingeringListener{Listener: ln, timeout: timeout}
}

type lingeringListener struct {
	net.Listener
	timeout time.Duration
}

func (l lingeringListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if _, ok := c.(halfCloser); !ok {
		return c, nil
	}
	return &lingeringConn{Conn: c, timeout: l.timeout}, nil
}

type halfCloser interface{ CloseWrite() error }

type lingeringConn struct {
	net.Conn
	timeout time.Duration
	closed  atomic.Bool
}

var discardBuffers = sync.Pool{New: func() any { return new([16 << 10]byte) }}

func (c *lingeringConn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return net.ErrClosed
	}
	if err := c.Conn.(halfCloser).CloseWrite(); err != nil {
		return c.Conn.Close() // already reset or closed by the peer
	}
	go func() {
		_ = c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
		buf := discardBuffers.Get().(*[16 << 10]byte)
		_, _ = io.CopyBuffer(io.Discard, struct{ io.Reader }{c.Conn}, buf[:])
		discardBuffers.Put(buf)
		_ = c.Conn.Close()
	}()
	return nil
}
