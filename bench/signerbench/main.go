// Command signerbench measures the signer against its ceiling (SPEC §12):
// a cache-hot signer and a bare fasthttp handler that answers a constant
// 302, each on its own loopback port, loaded in turn by the same wrk with
// the same settings, several rounds, medians reported.
//
//	go run ./bench/signerbench [-rounds 3] [-duration 8s] [-connections 64]
//
// It starts its own PostgreSQL cluster (a temporary one) and seeds a
// catalogue, so it needs nothing running. Run it on an idle machine; the
// figures are only comparable within one run.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/valyala/fasthttp"

	"github.com/playgate/playgate/api/catalog"
	"github.com/playgate/playgate/api/schema"
	"github.com/playgate/playgate/bench/internal/loadcmp"
	"github.com/playgate/playgate/internal/pgcluster"
	"github.com/playgate/playgate/signer/playback"
	"github.com/playgate/playgate/signer/token"
	"github.com/playgate/playgate/signer/trackcache"
)

func main() {
	// An interrupted run still stops what it started (its PostgreSQL
	// cluster, which pg_ctl runs apart, would outlive it otherwise) and
	// removes its files.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "signerbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	rounds := flag.Int("rounds", 3, "rounds per target")
	duration := flag.Duration("duration", 8*time.Second, "length of one wrk run")
	conns := flag.Int("connections", 64, "concurrent connections")
	threads := flag.Int("threads", 2, "wrk threads")
	tracks := flag.Int("tracks", 1000, "public tracks to seed; the load cycles over all of them")
	flag.Parse()
	if err := loadcmp.Check(); err != nil {
		return err
	}

	cluster, stop, err := pgcluster.StartTemp(ctx)
	if err != nil {
		return err
	}
	defer stop()
	ids, err := seed(ctx, cluster.AdminURL(), *tracks)
	if err != nil {
		return err
	}
	pool, err := pgxpool.New(ctx, cluster.AdminURL())
	if err != nil {
		return err
	}
	defer pool.Close()

	signerAddr, stopSigner, err := startSigner(ctx, pool)
	if err != nil {
		return err
	}
	defer stopSigner()
	bareAddr, stopBare, err := loadcmp.Serve(&fasthttp.Server{Handler: loadcmp.Bare302})
	if err != nil {
		return err
	}
	defer stopBare()

	// wrk cycles through every track via a Lua script, so the signer is
	// measured on the whole seeded catalogue, cache-hot after warm-up.
	script, err := writeScript(ids)
	if err != nil {
		return err
	}
	defer os.Remove(script)

	fmt.Printf("warming up the signer's cache with %d tracks\n", len(ids))
	if _, err := loadcmp.Run(ctx, "http://"+signerAddr, loadcmp.Options{Threads: 2, Connections: 16, Duration: 3 * time.Second, Script: script}); err != nil {
		return err
	}

	results := map[string][]loadcmp.Result{}
	load := loadcmp.Options{Threads: *threads, Connections: *conns, Duration: *duration, Script: script}
	for r := 0; r < *rounds; r++ {
		for _, target := range []struct{ name, addr string }{{"bare302", bareAddr}, {"signer", signerAddr}} {
			res, err := loadcmp.Run(ctx, "http://"+target.addr, load)
			if err != nil {
				return err
			}
			fmt.Printf("round %d %-8s %10.0f req/s  p50 %-8s p99 %-8s non-2xx/3xx %d\n", r+1, target.name, res.RPS, res.P50, res.P99, res.Non2xx3x)
			results[target.name] = append(results[target.name], res)
		}
	}
	bare, signer := loadcmp.Median(results["bare302"]), loadcmp.Median(results["signer"])
	fmt.Printf("\nmedians of %d rounds, %d connections, %d wrk threads, %s each\n", *rounds, *conns, *threads, *duration)
	fmt.Printf("  bare302 %10.0f req/s  p99 %s\n", bare.RPS, bare.P99)
	fmt.Printf("  signer  %10.0f req/s  p99 %s\n", signer.RPS, signer.P99)
	fmt.Printf("  ratio   %10.2f  (target >= 0.80)\n", signer.RPS/bare.RPS)
	return nil
}

func seed(ctx context.Context, url string, n int) ([]string, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	if _, err := schema.Migrate(ctx, conn); err != nil {
		return nil, err
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	store := catalog.NewStore(pool, nil)
	var ids []string
	for i := 0; i < n; i++ {
		t, err := store.CreateTrack(ctx, "bench", catalog.NewTrack{Title: fmt.Sprintf("Track %d", i), Artist: "Bench", Visibility: catalog.Public})
		if err != nil {
			return nil, err
		}
		sum := fmt.Sprintf("%064x", i+1)
		if _, err := store.SetAudio(ctx, t.ID, "", catalog.Audio{Backend: "local",
			Key: catalog.OriginalKey(t.ID, sum, "mp3"), ContentType: "audio/mpeg", Size: 1 << 20, SHA256: sum}, nil, nil); err != nil {
			return nil, err
		}
		ids = append(ids, t.ID.String())
	}
	return ids, nil
}

func startSigner(ctx context.Context, pool *pgxpool.Pool) (string, func(), error) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	set := metrics.NewSet()
	cache, err := trackcache.New(trackcache.Config{MaxBytes: 320 << 20, NegativeTTL: 10 * time.Second, GrantTTL: time.Minute}, pool, log, set)
	if err != nil {
		return "", nil, err
	}
	signer, err := token.NewBunny(token.BunnyHMAC, "https://zone.b-cdn.net", []byte("0d1c3a6e-9f7b-4b8e-8f5a-2c1d0e9f8a7b"))
	if err != nil {
		return "", nil, err
	}
	srv, err := playback.New(playback.Config{Provider: "bunny", TokenTTL: time.Hour, TokenBucket: 5 * time.Minute, Capabilities: token.CapabilitiesOf("bunny")},
		playback.Deps{Cache: cache, Signer: signer, Log: log, Metrics: set, Ready: cache.Ready(pool)})
	if err != nil {
		return "", nil, err
	}
	addr, stop, err := loadcmp.Serve(srv.HTTPServer())
	return addr, func() { stop(); cache.Close() }, err
}

func writeScript(ids []string) (string, error) {
	var b strings.Builder
	b.WriteString("local paths = {\n")
	for _, id := range ids {
		fmt.Fprintf(&b, "  %q,\n", "/v1/tracks/"+id+"/stream")
	}
	b.WriteString("}\nlocal i = 0\nrequest = function()\n  i = i % #paths + 1\n  return wrk.format(\"GET\", paths[i])\nend\n")
	return loadcmp.Script(b.String())
}
