// Command bench loads playgate like real players do (SPEC §9), with its
// own engine (bench/internal/load): closed loop or constant rate, warm-up,
// HDR-style latency percentiles, live progress, a final table, JSON.
//
//	bench limit  [flags]    the ceilings: a bare fasthttp server answering a constant 302, and
//	                        nginx serving origin-like files with the origin's request mix
//	bench signer [flags]    the signer, with zipf popularity over seeded tracks, a mix of public,
//	                        shared-private and unknown ids; reported as a ratio to `limit`
//	bench origin [flags]    the origin like CDN pulls: 1 MiB ranges of originals and HLS segments
//	bench play   [flags]    whole player sessions through signer → edge → origin (make run EDGE=1)
//	bench memory [flags]    the signer's cache with a million tracks: resident memory (SPEC §12)
//
// Common flags: -connections 64 -rate 0 (closed loop) -duration 10s -warmup 2s -json FILE.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
	"time"

	"github.com/playgate/playgate/bench/internal/load"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// common are the flags every scenario takes.
type common struct {
	connections int
	rate        float64
	duration    time.Duration
	warmup      time.Duration
	jsonOut     string
	htmlOut     string
}

func (c *common) register(fs *flag.FlagSet) {
	fs.IntVar(&c.connections, "connections", 64, "concurrent connections (workers)")
	fs.Float64Var(&c.rate, "rate", 0, "requests/s in the open model; 0 runs a closed loop")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "measured time")
	fs.DurationVar(&c.warmup, "warmup", 2*time.Second, "time before measuring")
	fs.StringVar(&c.jsonOut, "json", "", "write the results as JSON to this file")
	fs.StringVar(&c.htmlOut, "html", "", "write a self-contained HTML report with plots to this file")
}

func (c *common) config() load.Config {
	return load.Config{Workers: c.connections, Rate: c.rate, Duration: c.duration, Warmup: c.warmup}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: bench limit|signer [flags]")
	}
	switch args[0] {
	case "limit":
		return limitCmd(ctx, args[1:], stdout, stderr)
	case "signer":
		return signerCmd(ctx, args[1:], stdout, stderr)
	case "memory":
		return memoryCmd(ctx, args[1:], stdout, stderr)
	case "origin":
		return originCmd(ctx, args[1:], stdout, stderr)
	case "play":
		return playCmd(ctx, args[1:], stdout, stderr)
	}
	return fmt.Errorf("unknown scenario %q: use limit, signer, origin, play or memory", args[0])
}

// report is one measured target, as printed and written to JSON.
type report struct {
	Name     string            `json:"name"`
	RPS      float64           `json:"rps"`
	Requests uint64            `json:"requests"`
	Errors   uint64            `json:"errors"`
	ByStatus map[string]uint64 `json:"by_status"`
	P50      string            `json:"p50"`
	P90      string            `json:"p90"`
	P99      string            `json:"p99"`
	P999     string            `json:"p99_9"`
	Max      string            `json:"max"`
	Timeline []load.Point      `json:"timeline"`
}

func toReport(name string, r *load.Result) report {
	byStatus := map[string]uint64{}
	for s, n := range r.ByStatus {
		byStatus[fmt.Sprint(s)] = n
	}
	q := func(x float64) string { return r.Latency.Quantile(x).String() }
	return report{Name: name, RPS: r.RPS(), Requests: r.Requests, Errors: r.Errors, ByStatus: byStatus,
		P50: q(0.5), P90: q(0.9), P99: q(0.99), P999: q(0.999), Max: r.Latency.Max().String(), Timeline: r.Timeline}
}

func progress(w io.Writer, name string) func(load.Point) {
	return func(p load.Point) {
		fmt.Fprintf(w, "\r%-8s t=%-4s %9.0f req/s  p50 %-9s p99 %-9s errors %d   ", name,
			p.At.Round(time.Second), p.Rate, p.P50, p.P99, p.Error)
	}
}

func printTable(w io.Writer, reports []report) {
	fmt.Fprintf(w, "\n%-10s %10s %10s %8s %10s %10s %10s %10s %10s  %s\n",
		"target", "req/s", "requests", "errors", "p50", "p90", "p99", "p99.9", "max", "statuses")
	for _, r := range reports {
		keys := make([]string, 0, len(r.ByStatus))
		for k := range r.ByStatus {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		statuses := ""
		for _, k := range keys {
			statuses += fmt.Sprintf("%s:%d ", k, r.ByStatus[k])
		}
		fmt.Fprintf(w, "%-10s %10.0f %10d %8d %10s %10s %10s %10s %10s  %s\n",
			r.Name, r.RPS, r.Requests, r.Errors, r.P50, r.P90, r.P99, r.P999, r.Max, statuses)
	}
}

func writeJSON(path string, v any) error {
	if path == "" {
		return nil
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func readFile(path string) ([]byte, error) { return os.ReadFile(path) }

func getenv(name string) string { return os.Getenv(name) }
