package serve

import (
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// Listener wraps ln so that the origin sends local files from its TCP
// connections with sendfile(2), the way nginx does with sendfile and
// tcp_nopush: the headers leave with MSG_MORE, so they share the body's
// first segment instead of a packet of their own, and the body goes
// straight from the page cache to the socket. Serve the HTTPServer on it;
// on any other listener the origin copies bodies through its buffers.
func (s *Server) Listener(ln net.Listener) net.Listener {
	return sendListener{Listener: ln, firstChunk: firstSendfileChunk}
}

type sendListener struct {
	net.Listener
	firstChunk int64 // firstSendfileChunk, but for benchmarks
}

func (l sendListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c, nil
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return c, nil
	}
	sc := &sendConn{TCPConn: tc, raw: raw, firstChunk: l.firstChunk}
	sc.sendHeadersFn, sc.sendFileFn = sc.sendHeaders, sc.sendFileChunks
	return sc, nil
}

// sendConn is a TCP connection that sends file sections itself. It is
// used by one goroutine at a time: fasthttp runs the handler and writes
// its answer on the connection's own.
type sendConn struct {
	*net.TCPConn
	raw syscall.RawConn
	// firstChunk is what the first sendfile of a body asks for.
	firstChunk int64
	// more marks the next Write as headers a sendfile body follows. It
	// is atomic only so that a test may read it.
	more atomic.Bool

	// The system call in progress and its outcome. RawConn.Write takes
	// a callback, and a closure over a call's own variables would be a
	// heap allocation per response; these fields and the callbacks bound
	// to them once per connection are not.
	headers        []byte
	file           int
	offset, length int64
	done           int64
	err            error
	sendHeadersFn  func(fd uintptr) bool
	sendFileFn     func(fd uintptr) bool
}

// maxSendfileChunk is what one sendfile(2) is asked for, as Go's own
// sendfile loop does, so that a large range does not hold the socket
// for the whole transfer.
const maxSendfileChunk = 4 << 20

// firstSendfileChunk is what the first sendfile(2) of a body is asked
// for: a body larger than it leaves in two calls or more. Measured with
// originbench's ~100 KB segments over loopback (perf, on this project's
// 2-core VM), one call per segment spent about 17% of the origin's CPU
// in tcp_write_xmit with interrupts disabled, and a first call of 60 to
// 80 KiB cut that to about 5%: a fifth less CPU per request and 8 to 15%
// more requests a second, for one more system call. First calls of 16
// or 32 KiB gained nothing, and 64 KiB for every call made 1 MiB ranges
// slower (16 calls each), so only the first call is shortened. What it
// saves depends on the reader: BenchmarkSendfileSegment gives 18% less
// time per segment for clients reading 8 KiB at a time (wrk does) and
// nothing measurable for clients reading 64 KiB.
const firstSendfileChunk = 64 << 10

func (c *sendConn) headersBeforeFile() { c.more.Store(true) }

func (c *sendConn) fileSent() { c.more.Store(false) }

// Write sends p; headers marked by headersBeforeFile go with MSG_MORE,
// which holds them until the body's first bytes fill the segment (the
// last sendfile chunk goes without it, which pushes what is queued).
func (c *sendConn) Write(p []byte) (int, error) {
	if !c.more.Load() {
		return c.TCPConn.Write(p)
	}
	c.more.Store(false)
	c.headers, c.done, c.err = p, 0, nil
	rerr := c.raw.Write(c.sendHeadersFn)
	n, err := int(c.done), c.err
	c.headers, c.err = nil, nil
	if rerr != nil {
		return n, rerr // the deadline, or a closed connection
	}
	return n, opError("write", c, err)
}

// sendHeaders is Write's RawConn callback: it reports whether it is done,
// false to wait until the socket can take more.
func (c *sendConn) sendHeaders(sock uintptr) bool {
	for int(c.done) < len(c.headers) {
		m, e := unix.SendmsgN(int(sock), c.headers[c.done:], nil, nil, unix.MSG_MORE|unix.MSG_NOSIGNAL)
		if m > 0 {
			c.done += int64(m)
		}
		switch {
		case e == unix.EAGAIN:
			return false
		case e == unix.EINTR:
		case e != nil:
			c.err = os.NewSyscallError("sendmsg", e)
			return true
		}
	}
	return true
}

// sendFile sends length bytes of the file fd from offset with sendfile(2),
// waiting in Go's network poller while the socket is full, within the
// connection's write deadline.
func (c *sendConn) sendFile(fd int, offset, length int64) (int64, error) {
	c.file, c.offset, c.length, c.done, c.err = fd, offset, length, 0, nil
	rerr := c.raw.Write(c.sendFileFn)
	sent, err := c.done, c.err
	c.err = nil
	if rerr != nil {
		return sent, rerr
	}
	return sent, opError("sendfile", c, err)
}

// sendFileChunks is sendFile's RawConn callback: it reports whether it
// is done, false to wait until the socket can take more.
func (c *sendConn) sendFileChunks(sock uintptr) bool {
	for c.length > 0 {
		chunk := int64(maxSendfileChunk)
		if c.done == 0 {
			chunk = c.firstChunk
		}
		m, e := unix.Sendfile(int(sock), c.file, &c.offset, int(min(c.length, chunk)))
		if m > 0 {
			c.done += int64(m)
			c.length -= int64(m)
		}
		switch {
		case e == unix.EAGAIN:
			return false
		case e == unix.EINTR:
		case e != nil:
			c.err = os.NewSyscallError("sendfile", e)
			return true
		case m == 0:
			// The file ended early: something truncated an object
			// that is only ever replaced by rename.
			c.err = io.ErrUnexpectedEOF
			return true
		}
	}
	return true
}

func opError(op string, c net.Conn, err error) error {
	if err == nil {
		return nil
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
