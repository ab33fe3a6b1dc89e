package storage_test

import (
	"bytes"
	"context"
	"io"
	"net/url"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/playgate/playgate/internal/s3test"
	"github.com/playgate/playgate/internal/tcpproxy"
	"github.com/playgate/playgate/origin/storage"
)

// A CDN's misses reach the origin many at a time, and each becomes a GET
// to the bucket. Those connections must be reused, not opened anew for
// each wave: the SDK's default keeps only 10 idle per host, so every
// wave of more than 10 would pay new TCP (and TLS) handshakes.
func TestS3ReusesConnectionsUnderConcurrency(t *testing.T) {
	srv := s3test.Start(t)
	endpoint, err := url.Parse(srv.Endpoint)
	require.NoError(t, err)
	proxy := tcpproxy.Start(t, endpoint.Host)

	cfg := srv.Config("conns")
	cfg.Endpoint = "http://" + proxy.Addr()
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
	afterFirst := proxy.Accepted()
	for range 3 {
		wave()
	}
	opened := proxy.Accepted() - afterFirst
	t.Logf("the first wave opened %d connections, three more %d", afterFirst, opened)
	assert.LessOrEqual(t, opened, int64(concurrent/4),
		"three more waves of %d GETs opened %d new connections (the first opened %d)", concurrent, opened, afterFirst)
}
