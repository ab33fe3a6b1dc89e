package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	runtimemetrics "runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/playgate/playgate/api/schema"
	"github.com/playgate/playgate/internal/pgcluster"
	"github.com/playgate/playgate/signer/trackcache"
)

// memoryCmd measures the signer's memory with N cached tracks (SPEC §12:
// a million under 300 MiB resident). It starts a temporary PostgreSQL,
// inserts N tracks with audio and an HLS package, builds the signer's
// cache exactly as the signer does, fills it through its ordinary miss
// path, and reports RSS and heap.
func memoryCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench memory", flag.ContinueOnError)
	n := fs.Int("tracks", 1_000_000, "tracks to cache")
	cacheBytes := fs.Int64("cache-bytes", 320<<20, "SIGNER_CACHE_BYTES for the run (the signer's default)")
	heapProfile := fs.String("memprofile", "", "write a heap profile of the filled cache to this file (go tool pprof -sample_index=inuse_space)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cluster, stop, err := pgcluster.StartTemp(ctx)
	if err != nil {
		return err
	}
	defer stop()
	conn, err := pgx.Connect(ctx, cluster.AdminURL())
	if err != nil {
		return err
	}
	if _, err := schema.Migrate(ctx, conn); err != nil {
		return err
	}
	// The inserts are this tool's, not the signer's: they run without the
	// memory limit the environment sets for the fill (GOMEMLIMIT), and
	// stream their rows rather than hold a million of them.
	limit := debug.SetMemoryLimit(math.MaxInt64)
	fmt.Fprintf(stderr, "inserting %d tracks\n", *n)
	ids := make([]uuid.UUID, *n)
	now := time.Now()
	inserted := 0
	next := func() ([]any, error) {
		if inserted == len(ids) {
			return nil, nil
		}
		ids[inserted] = uuid.Must(uuid.NewV7())
		sum := fmt.Sprintf("%064x", inserted+1)
		key := "tracks/" + ids[inserted].String() + "/" + sum + ".mp3"
		row := []any{ids[inserted], "user-" + strconv.Itoa(inserted%50_000), "Track " + strconv.Itoa(inserted), "Artist",
			"public", int64(0), "local", key, "audio/mpeg", int64(5 << 20), sum,
			"ready", "hls/" + ids[inserted].String() + "/" + sum[:16], now, now}
		inserted++
		return row, nil
	}
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"tracks"}, []string{"id", "owner_id", "title", "artist", "visibility",
		"price_cents", "storage_backend", "object_key", "content_type", "size_bytes", "sha256", "hls_status", "hls_prefix",
		"created_at", "updated_at"}, pgx.CopyFromFunc(next)); err != nil {
		return err
	}
	conn.Close(ctx)
	debug.SetMemoryLimit(limit)

	pool, err := pgxpool.New(ctx, cluster.AdminURL())
	if err != nil {
		return err
	}
	defer pool.Close()
	before := readMem()
	set := metrics.NewSet()
	cache, err := trackcache.New(trackcache.Config{MaxBytes: *cacheBytes, NegativeTTL: time.Minute, GrantTTL: time.Minute},
		pool, slog.New(slog.NewTextHandler(io.Discard, nil)), set)
	if err != nil {
		return err
	}
	defer cache.Close()
	start := time.Now()
	// What a serving signer is resident at is what the fill reaches with
	// the garbage collector left to itself (GOGC, GOMEMLIMIT), not what
	// readMem reports after forcing a collection.
	var peakRSS uint64
	for i, id := range ids {
		if _, err := cache.Track(ctx, id); err != nil {
			return err
		}
		if i%10_000 == 0 {
			peakRSS = max(peakRSS, residentBytes())
		}
		if i%100_000 == 0 {
			fmt.Fprintf(stderr, "\rfilled %d", i)
		}
	}
	peakRSS = max(peakRSS, residentBytes())
	fmt.Fprintf(stderr, "\rfilled %d in %s\n", len(ids), time.Since(start).Round(time.Second))
	// Count the cached entries: a second pass counts the cache's hits.
	hitCounter := set.GetOrCreateCounter(`playgate_signer_cache_requests_total{cache="tracks",result="hit"}`)
	hitsBefore := hitCounter.Get()
	for _, id := range ids {
		if _, err := cache.Track(ctx, id); err != nil {
			return err
		}
	}
	after := readMem()
	if *heapProfile != "" {
		if err := writeHeapProfile(*heapProfile); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "tracks %d, of which cached after the fill: %d (cache hits on a second pass)\n", len(ids), hitCounter.Get()-hitsBefore)
	fmt.Fprintf(stdout, "process RSS %d MiB (before the cache: %d MiB), Go heap in use %d MiB (before: %d MiB), live heap %d MiB (before: %d MiB)\n",
		after.rss>>20, before.rss>>20, after.heap>>20, before.heap>>20, after.live>>20, before.live>>20)
	fmt.Fprintf(stdout, "the ids slice this tool holds is %d MiB of that\n", (len(ids)*16)>>20)
	fmt.Fprintf(stdout, "peak RSS while filling, without forced collections: %d MiB (GOGC %s, GOMEMLIMIT %s)\n",
		peakRSS>>20, envOr("GOGC", "100"), envOr("GOMEMLIMIT", "off"))
	return nil
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// rss is resident memory; heap the heap's spans in use, which include
// the free slots beside live objects; live what the last collection
// found reachable, the cache's own size.
type mem struct{ rss, heap, live uint64 }

// readMem returns freed memory to the system first, so that RSS shows
// what is live rather than what the tool's inserts once needed.
func readMem() mem {
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	live := []runtimemetrics.Sample{{Name: "/gc/heap/live:bytes"}}
	runtimemetrics.Read(live)
	return mem{heap: ms.HeapInuse, rss: residentBytes(), live: live[0].Value.Uint64()}
}

// residentBytes is this process's VmRSS.
func residentBytes() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}
