package playback_test

import (
	"context"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/playgate/playgate/api/catalog"
	"github.com/playgate/playgate/internal/tcpproxy"
	"github.com/playgate/playgate/signer/trackcache"
)

// A notification session whose connection silently dies is noticed
// within ListenPing twice over and replaced, and the cache forgets what
// it may have missed: a changed track is not served stale for the
// minutes TCP keepalive would take.
func TestListenerNoticesASilentConnection(t *testing.T) {
	ctx := context.Background()
	dbURL := pg.NewDatabase(t)
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	proxy := tcpproxy.Start(t, u.Host)
	u.Host = proxy.Addr()

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
	proxy.Silence()
	title := "After"
	_, err = store.UpdateTrack(ctx, tr.ID, catalog.TrackPatch{Title: &title}, nil, nil)
	require.NoError(t, err)

	require.Eventually(t, func() bool {
		got, err := cache.Track(ctx, tr.ID)
		return err == nil && got.Title == "After"
	}, 10*time.Second, 50*time.Millisecond, "the cache forgets the track once the session is replaced")
	require.Equal(t, "1", metric("playgate_signer_cache_listener_reconnects_total"))
}
