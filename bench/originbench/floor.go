package main

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// floorServer is the least a Go server can do for this benchmark's
// requests, to measure the origin against (-floor): a goroutine per
// connection, each request read through one bufio.Reader, the headers
// sent with MSG_MORE and the body with sendfile(2) from a descriptor kept
// open, as the origin sends them. It has no HTTP library, no checks
// beyond what the two workloads need, no metrics and no deadlines. What
// the origin costs beyond it is the origin's own; what it costs beyond
// nginx is Go's.
type floorServer struct {
	root  *os.Root
	mu    sync.Mutex
	files map[string]floorFile
}

type floorFile struct {
	fd   int
	size int64
}

// startFloor serves the files below dir on a loopback port until stop.
func startFloor(dir string) (addr string, stop func(), err error) {
	s, err := newFloorServer(dir)
	if err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.close()
		return "", nil, err
	}
	var serving sync.WaitGroup
	var connsMu sync.Mutex
	conns := map[net.Conn]struct{}{}
	serving.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			connsMu.Lock()
			conns[c] = struct{}{}
			connsMu.Unlock()
			serving.Go(func() {
				s.serve(c.(*net.TCPConn))
				connsMu.Lock()
				delete(conns, c)
				connsMu.Unlock()
			})
		}
	})
	return ln.Addr().String(), func() {
		ln.Close()
		connsMu.Lock()
		for c := range conns {
			c.Close()
		}
		connsMu.Unlock()
		serving.Wait() // no sendfile is using a descriptor any more
		s.close()
	}, nil
}

// newFloorServer serves the files below dir.
func newFloorServer(dir string) (*floorServer, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	return &floorServer{root: root, files: map[string]floorFile{}}, nil
}

// close closes the files kept open, once nothing sends from them.
func (s *floorServer) close() {
	for _, f := range s.files {
		unix.Close(f.fd)
	}
	s.root.Close()
}

func (s *floorServer) open(path string) (floorFile, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.files[path]; ok {
		return f, nil
	}
	f, err := s.root.Open(strings.TrimPrefix(path, "/"))
	if err != nil {
		return floorFile{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return floorFile{}, err
	}
	fd, err := unix.Dup(int(f.Fd()))
	if err != nil {
		return floorFile{}, err
	}
	s.files[path] = floorFile{fd: fd, size: st.Size()}
	return s.files[path], nil
}

func (s *floorServer) serve(c *net.TCPConn) {
	defer c.Close()
	raw, err := c.SyscallConn()
	if err != nil {
		return
	}
	br := bufio.NewReaderSize(c, 4<<10)
	headers := make([]byte, 0, 512)
	for {
		path, rangeSpec, err := readRequest(br)
		if err != nil {
			return
		}
		f, err := s.open(path)
		if err != nil { // missing, or outside the root
			if _, err := c.Write(floorNotFound); err != nil {
				return
			}
			continue
		}
		var offset, length int64
		headers, offset, length = appendFloorHead(headers[:0], f, rangeSpec)
		if !sendFloor(raw, headers, f.fd, offset, length) {
			return
		}
	}
}

// readRequest reads one request's head and returns its path and Range.
func readRequest(br *bufio.Reader) (path, rangeSpec string, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return "", "", err
	}
	if path, err = requestPath(line); err != nil {
		return "", "", err
	}
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return "", "", err
		}
		if len(bytes.TrimSpace(line)) == 0 {
			return path, rangeSpec, nil
		}
		if value, ok := rangeValue(line); ok {
			rangeSpec = value
		}
	}
}

// requestPath is the target of a request line.
func requestPath(line []byte) (string, error) {
	fields := bytes.Fields(line)
	if len(fields) != 3 {
		return "", errors.New("malformed request line")
	}
	return string(fields[1]), nil
}

// rangeValue is the value of a header line if it is Range.
func rangeValue(line []byte) (string, bool) {
	name, value, ok := bytes.Cut(line, []byte(":"))
	if !ok || !strings.EqualFold(string(name), "Range") {
		return "", false
	}
	return string(bytes.TrimSpace(value)), true
}

// floorNotFound answers a file the floor does not have.
var floorNotFound = []byte("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")

// appendFloorHead appends the head of the answer to a request for f with
// rangeSpec, and returns the section of f its body is.
func appendFloorHead(dst []byte, f floorFile, rangeSpec string) (head []byte, offset, length int64) {
	offset, length = 0, f.size
	if first, last, ok := parseFloorRange(rangeSpec, f.size); ok {
		offset, length = first, last-first+1
		dst = append(dst, "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes "...)
		dst = strconv.AppendInt(dst, first, 10)
		dst = append(dst, '-')
		dst = strconv.AppendInt(dst, last, 10)
		dst = append(dst, '/')
		dst = strconv.AppendInt(dst, f.size, 10)
		dst = append(dst, "\r\n"...)
	} else {
		dst = append(dst, "HTTP/1.1 200 OK\r\n"...)
	}
	dst = append(dst, "Server: floor\r\nContent-Type: application/octet-stream\r\nAccept-Ranges: bytes\r\nContent-Length: "...)
	dst = strconv.AppendInt(dst, length, 10)
	return append(dst, "\r\n\r\n"...), offset, length
}

// parseFloorRange understands the one form the range workload sends,
// bytes=first-last.
func parseFloorRange(spec string, size int64) (first, last int64, ok bool) {
	a, b, found := strings.Cut(strings.TrimPrefix(spec, "bytes="), "-")
	if !found {
		return 0, 0, false
	}
	first, err1 := strconv.ParseInt(a, 10, 64)
	last, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || first > last || first >= size {
		return 0, 0, false
	}
	return first, min(last, size-1), true
}

// firstSendfileChunk is what the origin asks its first sendfile of a body
// for (origin/serve), so that the floor makes the same system calls.
const firstSendfileChunk = 64 << 10

// sendFloor sends the headers with MSG_MORE and length bytes of fd from
// offset with sendfile, waiting in Go's poller when the socket is full.
func sendFloor(raw syscall.RawConn, headers []byte, fd int, offset, length int64) bool {
	answer := floorAnswer{pending: headers, file: fd, offset: offset, remaining: length}
	failed := false
	err := raw.Write(func(sock uintptr) bool {
		done, ok := answer.send(int(sock))
		failed = !ok
		return done || !ok
	})
	return err == nil && !failed
}

// floorAnswer is what is still to be sent of an answer: its head, then a
// section of a file.
type floorAnswer struct {
	pending           []byte
	file              int
	offset, remaining int64
	bodyBegun         bool
}

// send sends what the socket sock takes of the answer, as the origin
// does: the head with MSG_MORE, then the body with sendfile(2), the
// first call of a body stopping at firstSendfileChunk. It reports whether
// all is sent, and whether the connection is still good.
func (a *floorAnswer) send(sock int) (done, ok bool) {
	flags := unix.MSG_NOSIGNAL
	if a.remaining > 0 {
		flags |= unix.MSG_MORE
	}
	for len(a.pending) > 0 {
		n, err := unix.SendmsgN(sock, a.pending, nil, nil, flags)
		a.pending = a.pending[max(n, 0):]
		switch {
		case err == unix.EAGAIN:
			return false, true
		case err != nil && err != unix.EINTR:
			return false, false
		}
	}
	for a.remaining > 0 {
		chunk := a.remaining
		if !a.bodyBegun {
			chunk = min(chunk, firstSendfileChunk)
		}
		n, err := unix.Sendfile(sock, a.file, &a.offset, int(chunk))
		if n > 0 {
			a.remaining -= int64(n)
			a.bodyBegun = true
		}
		switch {
		case err == unix.EAGAIN:
			return false, true
		case err != nil && err != unix.EINTR, err == nil && n == 0:
			return false, false
		}
	}
	return true, true
}
