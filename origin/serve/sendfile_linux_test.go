package serve

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/playgate/playgate/origin/storage"
)

// recordingListener keeps the server's side of every connection.
type recordingListener struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

func (l *recordingListener) only(t *testing.T) net.Conn {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	require.Len(t, l.conns, 1, "every answer on one keep-alive connection")
	return l.conns[0]
}

// sendfileOrigin serves objects of the given sizes, named by their index,
// from a local backend on a real TCP listener, wrapped by the server's
// Listener when wrap is set.
func sendfileOrigin(t testing.TB, cfg Config, wrap func(*Server, net.Listener) net.Listener, sizes ...int) (addr string, keys []string, data [][]byte, ln *recordingListener) {
	t.Helper()
	b, err := storage.NewLocal(t.TempDir())
	require.NoError(t, err)
	for i, size := range sizes {
		d := make([]byte, size)
		_, _ = rand.Read(d)
		key := fmt.Sprintf("hls/0190a0b4-0000-7000-8000-000000000001/p1/128k/%032x.m4s", i)
		_, err = b.Put(context.Background(), key, bytes.NewReader(d), "")
		require.NoError(t, err)
		keys, data = append(keys, key), append(data, d)
	}
	cfg.Auth, cfg.CORSOrigins = AuthNone, []string{"*"}
	srv, err := New(cfg, []storage.Backend{b}, slog.New(slog.NewTextHandler(io.Discard, nil)), metrics.NewSet())
	require.NoError(t, err)
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var served net.Listener = inner
	if wrap != nil {
		served = wrap(srv, inner)
	}
	ln = &recordingListener{Listener: served}
	hs := srv.HTTPServer()
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { _ = hs.Shutdown() })
	return inner.Addr().String(), keys, data, ln
}

// Bodies on both sides of the sendfile threshold and of the first
// sendfile call's length, whole and in ranges,
// arrive byte for byte on one keep-alive connection, sent with sendfile
// or copied, and no answer leaves MSG_MORE armed for the next: that
// would hold a small answer's only packet for 200 ms.
func TestSendfileAnswers(t *testing.T) {
	for _, wrap := range []bool{true, false} {
		t.Run(fmt.Sprintf("sendfile=%v", wrap), func(t *testing.T) {
			var listener func(*Server, net.Listener) net.Listener
			if wrap {
				listener = (*Server).Listener
			}
			addr, keys, data, ln := sendfileOrigin(t, Config{}, listener, 100, sendfileAbove, sendfileAbove+1, 100_000, 3<<20, firstSendfileChunk, firstSendfileChunk+1)
			c, err := net.Dial("tcp", addr)
			require.NoError(t, err)
			defer c.Close()
			br := bufio.NewReader(c)
			for _, r := range []struct {
				method, rangeHeader string
				object              int
				want                []byte
			}{
				{"GET", "", 3, data[3]},
				{"GET", "", 0, data[0]},
				{"GET", "", 1, data[1]},
				{"GET", "", 2, data[2]},
				{"GET", "", 4, data[4]},
				{"GET", "bytes=1000-2000000", 4, data[4][1000:2000001]},
				{"GET", "bytes=8000-8300", 4, data[4][8000:8301]},
				{"GET", "bytes=-20000", 3, data[3][100_000-20000:]},
				{"HEAD", "", 4, nil},
				{"GET", "", 3, data[3]},
				{"GET", "", 5, data[5]},
				{"GET", "", 6, data[6]},
				{"GET", "bytes=1-", 6, data[6][1:]},
				{"GET", fmt.Sprintf("bytes=7-%d", firstSendfileChunk+7), 4, data[4][7 : firstSendfileChunk+8]},
			} {
				req := fmt.Sprintf("%s /%s HTTP/1.1\r\nHost: origin\r\n", r.method, keys[r.object])
				if r.rangeHeader != "" {
					req += "Range: " + r.rangeHeader + "\r\n"
				}
				_, err = io.WriteString(c, req+"\r\n")
				require.NoError(t, err)
				resp, err := http.ReadResponse(br, &http.Request{Method: r.method})
				require.NoError(t, err)
				body, err := io.ReadAll(resp.Body)
				require.NoError(t, err)
				assert.True(t, bytes.Equal(r.want, body), "%s %s of object %d: got %d bytes, want %d", r.method, r.rangeHeader, r.object, len(body), len(r.want))
				if r.method == "HEAD" {
					assert.Equal(t, int64(len(data[r.object])), resp.ContentLength)
				}
				server := ln.only(t)
				if sc, ok := server.(*sendConn); ok {
					assert.False(t, sc.more.Load(), "MSG_MORE left armed after %s %s", r.method, r.rangeHeader)
				} else {
					assert.False(t, wrap, "the Listener hands out connections that send files")
				}
			}
		})
	}
}

// getLargeObject asks an origin for an object larger than loopback's
// socket buffers, from a client whose own buffer is small, and returns
// the connection before reading anything.
func getLargeObject(t *testing.T, cfg Config) (c net.Conn, object []byte) {
	t.Helper()
	addr, keys, data, _ := sendfileOrigin(t, cfg, (*Server).Listener, 24<<20)
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	require.NoError(t, c.(*net.TCPConn).SetReadBuffer(64<<10))
	_, err = io.WriteString(c, "GET /"+keys[0]+" HTTP/1.1\r\nHost: origin\r\n\r\n")
	require.NoError(t, err)
	return c, data[0]
}

// A reader slower than the socket makes sendfile wait in the poller and
// resume where it stopped; every byte still arrives in order.
func TestSendfileWaitsForASlowReader(t *testing.T) {
	c, object := getLargeObject(t, Config{})
	time.Sleep(200 * time.Millisecond) // let the socket fill up
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(object, body), "got %d bytes, want %d", len(body), len(object))
}

// A client that stops reading is cut off at the write deadline instead
// of holding the connection: the deadline reaches sendfile's wait.
func TestSendfileKeepsTheWriteDeadline(t *testing.T) {
	c, object := getLargeObject(t, Config{WriteTimeout: 300 * time.Millisecond})
	time.Sleep(1500 * time.Millisecond) // well past the deadline
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	n, err := io.Copy(io.Discard, c)
	assert.NoError(t, err, "the server closes the connection")
	assert.Less(t, n, int64(len(object)), "the transfer stopped at the deadline")
}

// BenchmarkSendfileSegment is a 100 KB segment served over loopback to
// clients that read it whole, keep-alive, 8 connections per P: the
// origin's first sendfile cut at firstSendfileChunk against one call per
// body, for clients that read 8 KiB at a time (as wrk does) and 64 KiB.
// make bench-origin measures the whole server against nginx.
func BenchmarkSendfileSegment(b *testing.B) {
	for _, first := range []int64{firstSendfileChunk, maxSendfileChunk} {
		for _, readSize := range []int{8 << 10, 64 << 10} {
			name := fmt.Sprintf("first=%dKiB/read=%dKiB", first>>10, readSize>>10)
			b.Run(name, func(b *testing.B) {
				listener := func(_ *Server, ln net.Listener) net.Listener {
					return sendListener{Listener: ln, firstChunk: first}
				}
				addr, keys, data, _ := sendfileOrigin(b, Config{}, listener, 100_000)
				req := []byte("GET /" + keys[0] + " HTTP/1.1\r\nHost: origin\r\n\r\n")
				b.SetBytes(int64(len(data[0])))
				b.SetParallelism(8)
				b.RunParallel(func(pb *testing.PB) {
					c, err := net.Dial("tcp", addr)
					if err != nil {
						b.Error(err)
						return
					}
					defer c.Close()
					br := bufio.NewReaderSize(c, readSize)
					for pb.Next() {
						if _, err := c.Write(req); err != nil {
							b.Error(err)
							return
						}
						resp, err := http.ReadResponse(br, nil)
						if err != nil {
							b.Error(err)
							return
						}
						if n, err := io.Copy(io.Discard, resp.Body); err != nil || n != int64(len(data[0])) {
							b.Errorf("read %d bytes: %v", n, err)
							return
						}
					}
				})
			})
		}
	}
}

// A response's headers and file section leave without a heap allocation
// (at ~16k segments a second on two cores, each one is garbage the
// collector must come back for).
func TestSendConnDoesNotAllocate(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ln := sendListener{Listener: inner, firstChunk: firstSendfileChunk}
	defer ln.Close()
	client, err := net.Dial("tcp", inner.Addr().String())
	require.NoError(t, err)
	defer client.Close()
	accepted, err := ln.Accept()
	require.NoError(t, err)
	defer accepted.Close()
	sc := accepted.(*sendConn)

	const size = 100_000
	b, err := storage.NewLocal(t.TempDir())
	require.NoError(t, err)
	_, err = b.Put(context.Background(), "hls/a/seg.m4s", bytes.NewReader(make([]byte, size)), "")
	require.NoError(t, err)
	lf, _, err := b.OpenFile("hls/a/seg.m4s")
	require.NoError(t, err)
	defer lf.Close()
	fd, _, _ := lf.Section()

	headers := []byte("HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
	drained := make(chan int64)
	go func() {
		n, _ := io.Copy(io.Discard, client)
		drained <- n
	}()
	const runs = 50
	allocs := testing.AllocsPerRun(runs, func() {
		sc.headersBeforeFile()
		if _, err := sc.Write(headers); err != nil {
			t.Error(err)
		}
		if n, err := sc.sendFile(fd, 0, size); err != nil || n != size {
			t.Errorf("sent %d: %v", n, err)
		}
		sc.fileSent()
	})
	assert.Zero(t, allocs, "heap allocations per response")
	require.NoError(t, accepted.Close())
	assert.Equal(t, int64((runs+1)*(len(headers)+size)), <-drained, "every byte arrived")
}
