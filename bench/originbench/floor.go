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
	root, err := os.OpenRoot(dir)
	if err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		root.Close()
		return "", nil, err
	}
	s := &floorServer{root: root, files: map[string]floorFile{}}
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
		for _, f := range s.files {
			unix.Close(f.fd)
		}
		root.Close()
	}, nil
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
			if _, err := c.Write([]byte("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")); err != nil {
				return
			}
			continue
		}
		offset, length := int64(0), f.size
		headers = append(headers[:0], "HTTP/1.1 200 OK\r\n"...)
		if first, last, ok := parseFloorRange(rangeSpec, f.size); ok {
			offset, length = first, last-first+1
			headers = append(headers[:0], "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes "...)
			headers = strconv.AppendInt(headers, first, 10)
			headers = append(headers, '-')
			headers = strconv.AppendInt(headers, last, 10)
			headers = append(headers, '/')
			headers = strconv.AppendInt(headers, f.size, 10)
			headers = append(headers, "\r\n"...)
		}
		headers = append(headers, "Server: floor\r\nContent-Type: application/octet-stream\r\nAccept-Ranges: bytes\r\nContent-Length: "...)
		headers = strconv.AppendInt(headers, length, 10)
		headers = append(headers, "\r\n\r\n"...)
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
	fields := bytes.Fields(line)
	if len(fields) != 3 {
		return "", "", errors.New("malformed request line")
	}
	path = string(fields[1])
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return "", "", err
		}
		if len(bytes.TrimSpace(line)) == 0 {
			return path, rangeSpec, nil
		}
		if name, value, ok := bytes.Cut(line, []byte(":")); ok && strings.EqualFold(string(name), "Range") {
			rangeSpec = string(bytes.TrimSpace(value))
		}
	}
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
	failed := false
	err := raw.Write(func(sock uintptr) bool {
		for len(headers) > 0 {
			n, err := unix.SendmsgN(int(sock), headers, nil, nil, unix.MSG_MORE|unix.MSG_NOSIGNAL)
			headers = headers[max(n, 0):]
			switch {
			case err == unix.EAGAIN:
				return false
			case err != nil && err != unix.EINTR:
				failed = true
				return true
			}
		}
		for sent := false; length > 0; sent = true {
			chunk := length
			if !sent {
				chunk = min(length, firstSendfileChunk)
			}
			n, err := unix.Sendfile(int(sock), fd, &offset, int(chunk))
			length -= int64(max(n, 0))
			switch {
			case err == unix.EAGAIN:
				return false
			case err != nil && err != unix.EINTR, err == nil && n == 0:
				failed = true
				return true
			}
		}
		return true
	})
	return err == nil && !failed
}
