package storage_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/playgate/playgate/internal/s3test"
	"github.com/playgate/playgate/origin/storage"
)

// countingProxy forwards TCP connections to target and counts them.
type countingProxy struct {
	ln       net.Listener
	accepted atomic.Int64

	mu    sync.Mutex
	conns []net.Conn
}

func startCountingProxy(t *testing.T, target string) *countingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &countingProxy{ln: ln}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		// Kept-alive connections would otherwise copy until the
		// server's idle timeout.
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.accepted.Add(1)
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			wg.Go(func() { _, _ = io.Copy(up, c); up.Close() })
			wg.Go(func() { _, _ = io.Copy(c, up); c.Close() })
		}
	})
	return p
}

// A CDN's misses reach the origin many at a time, and each becomes a GET
// to the bucket. Those connections must be reused, not opened anew for
// each wave: the SDK's default keeps only 10 idle per host, so every
// wave of more than 10 would pay new TCP (and TLS) handshakes.
func TestS3ReusesConnectionsUnderConcurrency(t *testing.T) {
	srv := s3test.Start(t)
	endpoint, err := url.Parse(srv.Endpoint)
	require.NoError(t, err)
	proxy := startCountingProxy(t, endpoint.Host)

	cfg := srv.Config("conns")
	cfg.Endpoint = "http://" + proxy.ln.Addr().String()
	ctx := context.Background()
	client, err := storage.NewS3Client(ctx, cfg)
	require.NoError(t, err)
	_, err = client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &cfg.Bucket})
	require.NoError(t, err)
	bucket, err := storage.NewS3(client, cfg.Bucket, cfg.PartSize)
	require.NoError(t, err)
	body := bytes.Repeat([]byte("a"), 64<<10)
	_, err = bucket.Put(ctx, "tracks/x/seg.m4s", bytes.NewReader(body), "audio/mp4")
	require.NoError(t, err)

	const concurrent = 32
	// Each GET holds its connection until its body is read, and no body
	// is read before every GET has answered: a wave uses exactly
	// concurrent connections at once, however the goroutines are
	// scheduled (under -race on a busy machine, a first wave that merely
	// started together once used only 23).
	wave := func() {
		var wg, answered sync.WaitGroup
		answered.Add(concurrent)
		for range concurrent {
			wg.Go(func() {
				rc, _, err := bucket.Open(ctx, "tracks/x/seg.m4s", 0, -1)
				answered.Done()
				if !assert.NoError(t, err) {
					return
				}
				answered.Wait()
				n, err := io.Copy(io.Discard, rc)
				assert.NoError(t, err)
				assert.Equal(t, int64(len(body)), n)
				assert.NoError(t, rc.Close())
			})
		}
		wg.Wait()
	}
	wave()
	afterFirst := proxy.accepted.Load()
	for range 3 {
		wave()
	}
	opened := proxy.accepted.Load() - afterFirst
	t.Logf("the first wave opened %d connections, three more %d", afterFirst, opened)
	assert.LessOrEqual(t, opened, int64(concurrent/4),
		"three more waves of %d GETs opened %d new connections (the first opened %d)", concurrent, opened, afterFirst)
}
