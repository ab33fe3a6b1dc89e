package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// The floor's work done the way nginx does it (-event-loops): an event
// loop per core, each on a thread of its own with its own listening
// socket (SO_REUSEPORT) and epoll instance, serving every connection it
// accepts to the end. No goroutine per connection and no Go network
// poller: against the floor it shows what Go's scheduler costs here, or
// saves.

// startLoops serves the files below dir with n event loops on one
// loopback port until stop.
func startLoops(dir string, n int) (addr string, stop func(), err error) {
	s, err := newFloorServer(dir)
	if err != nil {
		return "", nil, err
	}
	var fds []int // listeners and the eventfds that stop the loops
	closeAll := func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
		s.close()
	}
	port := 0
	var listeners []int
	for range n {
		var lfd int
		if lfd, port, err = listenReusePort(port); err != nil {
			closeAll()
			return "", nil, err
		}
		fds = append(fds, lfd)
		listeners = append(listeners, lfd)
	}
	var loops sync.WaitGroup
	var wakes []int
	for _, lfd := range listeners {
		wake, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
		if err != nil {
			for _, w := range wakes {
				unix.Write(w, []byte{1, 0, 0, 0, 0, 0, 0, 0})
			}
			loops.Wait()
			closeAll()
			return "", nil, err
		}
		fds = append(fds, wake)
		wakes = append(wakes, wake)
		loops.Go(func() {
			if err := serveLoop(s, lfd, wake); err != nil {
				fmt.Fprintln(os.Stderr, "originbench: event loop:", err)
			}
		})
	}
	return "127.0.0.1:" + strconv.Itoa(port), func() {
		for _, w := range wakes {
			unix.Write(w, []byte{1, 0, 0, 0, 0, 0, 0, 0}) // an eventfd adds 1
		}
		loops.Wait() // no sendfile is using a descriptor any more
		closeAll()
	}, nil
}

// listenReusePort listens on 127.0.0.1:port (0: any) beside the other
// listeners there, as nginx's workers do with reuseport: the kernel
// spreads new connections over them.
func listenReusePort(port int) (fd, bound int, err error) {
	fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, 0, err
	}
	sa, err := func() (unix.Sockaddr, error) {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			return nil, err
		}
		if err := unix.Bind(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			return nil, err
		}
		if err := unix.Listen(fd, 1024); err != nil {
			return nil, err
		}
		return unix.Getsockname(fd)
	}()
	if err != nil {
		unix.Close(fd)
		return 0, 0, err
	}
	return fd, sa.(*unix.SockaddrInet4).Port, nil
}

// serveLoop serves the connections lfd accepts until wake is written.
func serveLoop(s *floorServer, lfd, wake int) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	defer unix.Close(epfd)
	conns := map[int]*loopConn{}
	defer func() {
		for fd := range conns {
			unix.Close(fd)
		}
	}()
	watch := func(op, fd int, events uint32) error {
		return unix.EpollCtl(epfd, op, fd, &unix.EpollEvent{Events: events, Fd: int32(fd)})
	}
	if err := watch(unix.EPOLL_CTL_ADD, lfd, unix.EPOLLIN); err != nil {
		return err
	}
	if err := watch(unix.EPOLL_CTL_ADD, wake, unix.EPOLLIN); err != nil {
		return err
	}
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(epfd, events, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		for _, ev := range events[:n] {
			switch fd := int(ev.Fd); fd {
			case wake:
				return nil
			case lfd:
				for {
					cfd, _, err := unix.Accept4(lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
					if err != nil { // EAGAIN: all accepted
						break
					}
					// As Go sets it on the connections it accepts.
					_ = unix.SetsockoptInt(cfd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
					if err := watch(unix.EPOLL_CTL_ADD, cfd, unix.EPOLLIN); err != nil {
						unix.Close(cfd)
						continue
					}
					conns[cfd] = &loopConn{fd: cfd}
				}
			default:
				c := conns[fd]
				if c == nil {
					continue
				}
				writing := c.writing
				if !c.ready(s) {
					unix.Close(fd) // leaves the epoll set with its last descriptor
					delete(conns, fd)
					continue
				}
				if c.writing != writing {
					events := uint32(unix.EPOLLIN)
					if c.writing {
						events = unix.EPOLLOUT
					}
					if err := watch(unix.EPOLL_CTL_MOD, fd, events); err != nil {
						return err
					}
				}
			}
		}
	}
}

// loopConn is a connection an event loop serves.
type loopConn struct {
	fd      int
	in      [4 << 10]byte // what has arrived of the next request heads
	n       int
	out     []byte // the answer's head
	answer  floorAnswer
	writing bool // waiting for the socket to take more
}

var endOfHead = []byte("\r\n\r\n")

// ready does what the connection's readiness allows: finish sending an
// answer, or read requests and answer them. It reports whether the
// connection stays open; writing says whether it waits to send more.
func (c *loopConn) ready(s *floorServer) bool {
	if c.writing {
		done, ok := c.answer.send(c.fd)
		if !ok || !done {
			return ok
		}
		c.writing = false
	} else {
		m, err := unix.Read(c.fd, c.in[c.n:])
		if err == unix.EAGAIN || err == unix.EINTR {
			return true
		}
		if err != nil || m == 0 {
			return false
		}
		c.n += m
	}
	for {
		end := bytes.Index(c.in[:c.n], endOfHead)
		if end < 0 {
			return c.n < len(c.in) // a head that does not fit is refused
		}
		path, rangeSpec, err := parseHead(c.in[:end+2])
		c.n = copy(c.in[:], c.in[end+len(endOfHead):c.n])
		if err != nil {
			return false
		}
		if f, err := s.open(path); err != nil { // missing, or outside the root
			c.out = append(c.out[:0], floorNotFound...)
			c.answer = floorAnswer{pending: c.out}
		} else {
			var offset, length int64
			c.out, offset, length = appendFloorHead(c.out[:0], f, rangeSpec)
			c.answer = floorAnswer{pending: c.out, file: f.fd, offset: offset, remaining: length}
		}
		done, ok := c.answer.send(c.fd)
		if !ok {
			return false
		}
		if !done {
			c.writing = true
			return true
		}
	}
}

// parseHead returns the path and Range of a request head (without the
// blank line that ends it).
func parseHead(head []byte) (path, rangeSpec string, err error) {
	for line := range bytes.Lines(head) {
		if path == "" {
			if path, err = requestPath(line); err != nil {
				return "", "", err
			}
		} else if value, ok := rangeValue(line); ok {
			rangeSpec = value
		}
	}
	return path, rangeSpec, nil
}
