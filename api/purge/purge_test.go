package purge

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudfront"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var paths = []string{"tracks/t1/abc.mp3", "hls/t1/"}

type recorded struct {
	method, path, query string
	header              http.Header
	body                string
	at                  time.Time // when it arrived
}

// fakeAPI records requests and answers with the statuses given, then 200.
func fakeAPI(t *testing.T, statuses ...int) (*httptest.Server, func() []recorded) {
	var mu sync.Mutex
	var reqs []recorded
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		n := len(reqs)
		reqs = append(reqs, recorded{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Clone(), string(b), time.Now()})
		mu.Unlock()
		if n < len(statuses) {
			w.WriteHeader(statuses[n])
			return
		}
		if strings.Contains(r.URL.Path, "/invalidation") {
			w.Header().Set("Content-Type", "text/xml")
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, `<?xml version="1.0"?><Invalidation><Id>I1</Id><Status>InProgress</Status></Invalidation>`)
			return
		}
		io.WriteString(w, `{"success":true}`)
	}))
	t.Cleanup(srv.Close)
	return srv, func() []recorded {
		mu.Lock()
		defer mu.Unlock()
		return append([]recorded(nil), reqs...)
	}
}

func TestBunnyRequestShape(t *testing.T) {
	srv, reqs := fakeAPI(t)
	b := &Bunny{API: srv.URL, ZoneURL: "https://zone.b-cdn.net", Key: "account-key"}
	require.NoError(t, b.Purge(context.Background(), paths))
	got := reqs()
	require.Len(t, got, 2)
	for i, want := range []string{"https://zone.b-cdn.net/tracks/t1/abc.mp3", "https://zone.b-cdn.net/hls/t1/*"} {
		assert.Equal(t, http.MethodPost, got[i].method)
		assert.Equal(t, "/purge", got[i].path)
		assert.Equal(t, "account-key", got[i].header.Get("AccessKey"))
		q, _ := parseQuery(got[i].query)
		assert.Equal(t, want, q["url"])
	}
}

func TestCloudflareRequestShape(t *testing.T) {
	srv, reqs := fakeAPI(t)
	c := &Cloudflare{API: srv.URL, Zone: "zone-1", Token: "api-token", SiteURL: "https://media.example.com"}
	require.NoError(t, c.Purge(context.Background(), paths))
	got := reqs()
	require.Len(t, got, 1)
	assert.Equal(t, "/zones/zone-1/purge_cache", got[0].path)
	assert.Equal(t, "Bearer api-token", got[0].header.Get("Authorization"))
	var body map[string][]string
	require.NoError(t, json.Unmarshal([]byte(got[0].body), &body))
	assert.Equal(t, []string{"https://media.example.com/tracks/t1/abc.mp3"}, body["files"])
	assert.Equal(t, []string{"media.example.com/hls/t1/"}, body["prefixes"])
}

func TestCloudFrontRequestShape(t *testing.T) {
	srv, reqs := fakeAPI(t)
	client := cloudfront.New(cloudfront.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL),
		Credentials: credentials.NewStaticCredentialsProvider("AKID", "SECRET", "")})
	c := &CloudFront{Client: client, Distribution: "EDFDVBD6EXAMPLE"}
	require.NoError(t, c.Purge(context.Background(), paths))
	got := reqs()
	require.Len(t, got, 1)
	assert.Equal(t, http.MethodPost, got[0].method)
	assert.True(t, strings.HasSuffix(got[0].path, "/distribution/EDFDVBD6EXAMPLE/invalidation"), got[0].path)
	assert.True(t, strings.HasPrefix(got[0].header.Get("Authorization"), "AWS4-HMAC-SHA256 "), "SigV4-signed")
	assert.Contains(t, got[0].body, "<Path>/tracks/t1/abc.mp3</Path>")
	assert.Contains(t, got[0].body, "<Path>/hls/t1/*</Path>")
	assert.Contains(t, got[0].body, "<Quantity>2</Quantity>")
}

func newTestQueue(t *testing.T, c Client, cfg QueueConfig) (*Queue, *metrics.Set) {
	set := metrics.NewSet()
	q := NewQueue(cfg, "bunny", c, slog.New(slog.NewTextHandler(io.Discard, nil)), set)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go q.Run(ctx)
	return q, set
}

func counter(set *metrics.Set, outcome string) uint64 {
	return set.GetOrCreateCounter(`playgate_api_purges_total{provider="bunny",outcome="` + outcome + `"}`).Get()
}

// 429 and 5xx are retried with backoff until the purge goes through.
func TestQueueRetries(t *testing.T) {
	srv, reqs := fakeAPI(t, http.StatusTooManyRequests, http.StatusBadGateway)
	q, set := newTestQueue(t, &Bunny{API: srv.URL, ZoneURL: "https://z.b-cdn.net", Key: "k"}, QueueConfig{Backoff: 10 * time.Millisecond})
	q.Purge(context.Background(), []string{"tracks/t1/abc.mp3"})
	require.Eventually(t, func() bool { return counter(set, "purged") == 1 }, 5*time.Second, 10*time.Millisecond)
	assert.Len(t, reqs(), 3)
	assert.EqualValues(t, 2, counter(set, "retried"))
}

// Other errors are not retried.
func TestQueueGivesUpOnClientErrors(t *testing.T) {
	srv, reqs := fakeAPI(t, http.StatusUnauthorized)
	q, set := newTestQueue(t, &Bunny{API: srv.URL, ZoneURL: "https://z.b-cdn.net", Key: "wrong"}, QueueConfig{Backoff: 10 * time.Millisecond})
	q.Purge(context.Background(), []string{"tracks/t1/abc.mp3"})
	require.Eventually(t, func() bool { return counter(set, "failed") == 1 }, 5*time.Second, 10*time.Millisecond)
	assert.Len(t, reqs(), 1)
}

type blockingClient struct{ release chan struct{} }

func (b blockingClient) Purge(ctx context.Context, _ []string) error {
	select {
	case <-b.release:
	case <-ctx.Done():
	}
	return nil
}

// Purge never blocks the write that asked for it: a full queue drops.
func TestQueueNeverBlocks(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	q, set := newTestQueue(t, blockingClient{release}, QueueConfig{Size: 2})
	done := make(chan struct{})
	go func() {
		for i := 0; i < 10; i++ {
			q.Purge(context.Background(), []string{"tracks/t1/abc.mp3"})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Purge blocked")
	}
	assert.GreaterOrEqual(t, counter(set, "dropped"), uint64(7))
}

func parseQuery(raw string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range strings.Split(raw, "&") {
		k, v, _ := strings.Cut(kv, "=")
		u, err := urlUnescape(v)
		if err != nil {
			return nil, err
		}
		out[k] = u
	}
	return out, nil
}

func urlUnescape(s string) (string, error) { return url.QueryUnescape(s) }
