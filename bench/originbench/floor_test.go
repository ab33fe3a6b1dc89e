package main

import (
	"bufio"
	"crypto/rand"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Both baselines answer the benchmark's two workloads byte for byte on
// one keep-alive connection: whole files, and bytes=first-last ranges.
func TestFloorAnswers(t *testing.T) {
	dir := t.TempDir()
	data := make([]byte, 300_000)
	_, _ = rand.Read(data)
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "hls"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "hls", "a.m4s"), data, 0o644))
	// More than the socket takes at once: its sending waits for room.
	big := make([]byte, 16<<20)
	_, _ = rand.Read(big)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "hls", "big.m4s"), big, 0o644))
	for name, start := range map[string]func(string) (string, func(), error){
		"goroutines":  startFloor,
		"event loops": func(dir string) (string, func(), error) { return startLoops(dir, 2) },
	} {
		t.Run(name, func(t *testing.T) {
			addr, stop, err := start(dir)
			require.NoError(t, err)
			defer stop()
			testFloorAnswers(t, addr, data, big)
		})
	}
}

func testFloorAnswers(t *testing.T, addr string, data, big []byte) {
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	defer client.CloseIdleConnections()
	for _, c := range []struct {
		path, rangeHeader string
		status            int
		want              []byte
		contentRange      string
	}{
		{"/hls/a.m4s", "", 200, data, ""},
		{"/hls/a.m4s", "bytes=100-199", 206, data[100:200], "bytes 100-199/300000"},
		{"/hls/a.m4s", "bytes=299000-400000", 206, data[299000:], "bytes 299000-299999/300000"},
		{"/hls/a.m4s", "bytes=300000-300001", 200, data, ""}, // not a range it serves: the whole file
		{"/hls/missing.m4s", "", 404, []byte{}, ""},
		{"/hls/big.m4s", "", 200, big, ""},
		{"/../etc/passwd", "", 404, []byte{}, ""},
	} {
		req, err := http.NewRequest("GET", "http://"+addr+c.path, nil)
		require.NoError(t, err)
		if c.rangeHeader != "" {
			req.Header.Set("Range", c.rangeHeader)
		}
		resp, err := client.Do(req)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		assert.Equal(t, c.status, resp.StatusCode, "%s %s", c.path, c.rangeHeader)
		assert.Equal(t, c.want, body, "%s %s", c.path, c.rangeHeader)
		assert.Equal(t, c.contentRange, resp.Header.Get("Content-Range"))
	}
}

// Whatever arrives, the baseline's parsing neither panics nor names
// bytes outside the file.
func FuzzFloorRequest(f *testing.F) {
	f.Add("GET /hls/a.m4s HTTP/1.1\r\nHost: x\r\nRange: bytes=0-99\r\n\r\n", int64(1000))
	f.Add("GET / HTTP/1.1\r\nrange:bytes=5-\r\n\r\n", int64(10))
	f.Add("garbage\n\n", int64(0))
	f.Fuzz(func(t *testing.T, request string, size int64) {
		if size < 0 {
			return
		}
		checkRange := func(rangeSpec string) {
			if first, last, ok := parseFloorRange(rangeSpec, size); ok && (first < 0 || first > last || last >= size) {
				t.Fatalf("range %q of %d: %d-%d", rangeSpec, size, first, last)
			}
		}
		if _, rangeSpec, err := readRequest(bufio.NewReader(strings.NewReader(request))); err == nil {
			checkRange(rangeSpec)
		}
		if _, rangeSpec, err := parseHead([]byte(request)); err == nil { // the event loops' parser
			checkRange(rangeSpec)
		}
	})
}
