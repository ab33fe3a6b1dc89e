package playback_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/playgate/playgate/api/catalog"
	"github.com/playgate/playgate/signer/trackcache"
)

// blackholeProxy forwards TCP connections to PostgreSQL until silence is
// called: from then on, the connections it had go quiet both ways
// without closing, as behind a NAT that forgot them. New ones work.
type blackholeProxy struct {
	ln    net.Listener
	mu    sync.Mutex
	quiet []*atomic.Bool
}

func startBlackholeProxy(t *testing.T, target string) *blackholeProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &blackholeProxy{ln: ln}
	var wg sync.WaitGroup
	var conns []net.Conn
	var connsMu sync.Mutex
	t.Cleanup(func() {
		ln.Close()
		connsMu.Lock()
		for _, c := range conns {
			c.Close()
		}
		connsMu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			connsMu.Lock()
			conns = append(conns, c, up)
			connsMu.Unlock()
			quiet := &atomic.Bool{}
			p.mu.Lock()
			p.quiet = append(p.quiet, quiet)
			p.mu.Unlock()
			pipe := func(dst, src net.Conn) {
				buf := make([]byte, 32<<10)
				for {
					n, err := src.Read(buf)
					if n > 0 && !quiet.Load() {
						if _, err := dst.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}
			wg.Go(func() { pipe(up, c) })
			wg.Go(func() { pipe(c, up) })
		}
	})
	return p
}

func (p *blackholeProxy) silence() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, q := range p.quiet {
		q.Store(true)
	}
}

// A notification session whose connection silently dies is noticed
// within ListenPing twice over and replaced, and the cache forgets what
// it may have missed: a changed track is not served stale for the
// minutes TCP keepalive would take.
func TestListenerNoticesASilentConnection(t *testing.T) {
	ctx := context.Background()
	dbURL := pg.NewDatabase(t)
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	proxy := startBlackholeProxy(t, u.Host)
	u.Host = proxy.ln.Addr().String()

	pool, err := pgxpool.New(ctx, dbURL)
	require.NoError(t, err)
	defer pool.Close()
	set := metrics.NewSet()
	cache, err := trackcache.New(trackcache.Config{MaxBytes: 1 << 20, NegativeTTL: time.Minute, GrantTTL: time.Minute,
		ListenPing: 300 * time.Millisecond}, pool, slog.New(slog.NewTextHandler(io.Discard, nil)), set)
	require.NoError(t, err)
	defer cache.Close()
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ready := make(chan struct{})
	go cache.Listen(lctx, u.String(), ready)
	<-ready

	metric := func(name string) string {
		var text strings.Builder
		set.WritePrometheus(&text)
		for line := range strings.Lines(text.String()) {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+" "); ok {
				return v
			}
		}
		return ""
	}
	store := catalog.NewStore(pool, nil)
	tr, err := store.CreateTrack(ctx, "alice", catalog.NewTrack{Title: "Before", Artist: "A", Visibility: catalog.Public})
	require.NoError(t, err)
	// The creation's own notification comes first: then the track stays.
	require.Eventually(t, func() bool { return metric("playgate_signer_cache_invalidations_total") == "1" },
		10*time.Second, 20*time.Millisecond)
	for range 2 {
		cached, err := cache.Track(ctx, tr.ID)
		require.NoError(t, err)
		require.Equal(t, "Before", cached.Title)
	}
	require.Equal(t, "1", metric(`playgate_signer_cache_requests_total{cache="tracks",result="hit"}`), "cached")

	// The session goes quiet, then the track changes: its NOTIFY is lost.
	proxy.silence()
	title := "After"
	_, err = store.UpdateTrack(ctx, tr.ID, catalog.TrackPatch{Title: &title}, nil)
	require.NoError(t, err)

	require.Eventually(t, func() bool {
		got, err := cache.Track(ctx, tr.ID)
		return err == nil && got.Title == "After"
	}, 10*time.Second, 50*time.Millisecond, "the cache forgets the track once the session is replaced")
	require.Equal(t, "1", metric("playgate_signer_cache_listener_reconnects_total"))
}
