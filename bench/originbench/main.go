// Command originbench measures the origin against nginx (SPEC §12): both
// serve the same directory of objects from local disk on loopback, and
// the same wrk loads each in turn, several rounds, medians reported.
//
// Two workloads: ~100 KB HLS segments (50 of them, cycled), and 1 MiB
// ranges of a 10 MiB original at random 1 MiB boundaries.
//
//	go run ./bench/originbench [-rounds 7] [-duration 5s] [-connections 64] [-procs N] [-pin] [-floor] [-event-loops]
//
// nginx is Debian's, run as a child with its own configuration: sendfile,
// tcp_nopush, open_file_cache, no access log, a worker per core (-procs:
// N workers, and GOMAXPROCS=N for the origin), each with its own
// listening socket (reuseport), so that the connections are spread
// evenly over them.
//
// Besides requests/s it prints the CPU each request cost the server, wrk
// and the kernel's soft interrupts, and the share of the machine's CPU
// time left idle: on a machine the load generator shares, that is what
// separates a server's own cost from how the cores were shared. -pin
// puts the servers and wrk on separate halves of the CPUs; on 2 cores
// wrk then has one, and is itself the limit, so read the server CPU per
// request there.
//
// -floor adds a third server: the least Go can do with the same system
// calls, no HTTP library (floor.go). The origin's ratio to it is what the
// origin itself costs; its ratio to nginx is what Go's runtime costs on
// the machine. -event-loops adds the floor's work done as nginx does it,
// an event loop per core with no goroutine per connection (loops.go):
// whether another design in Go would do better than the floor.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/playgate/playgate/bench/internal/loadcmp"
	"github.com/playgate/playgate/bench/internal/objectset"
	"github.com/playgate/playgate/bench/internal/staticnginx"
	"github.com/playgate/playgate/deploy/edge"
	"github.com/playgate/playgate/origin/serve"
	"github.com/playgate/playgate/origin/storage"
)

func main() {
	// An interrupted run still stops what it started (nginx, in its own
	// process group, would outlive it otherwise) and removes its files.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "originbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	// Seven short rounds rather than three long ones: on a shared 2-core
	// machine one round's ratio ranges ±10%, and three of them gave a
	// median of 1.00 where runs of seven gave 0.87 to 0.95.
	rounds := flag.Int("rounds", 7, "rounds per target and workload")
	duration := flag.Duration("duration", 5*time.Second, "length of one wrk run")
	conns := flag.Int("connections", 64, "concurrent connections")
	threads := flag.Int("threads", 2, "wrk threads")
	procs := flag.Int("procs", 0, "cores each server may use at once: nginx's worker processes and the origin's GOMAXPROCS (0: every core)")
	pin := flag.Bool("pin", false, "run the servers on the first half of the CPUs and wrk on the rest (taskset)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of each run of the origin, and of the floor and event loops (same process), to this path plus .TARGET.WORKLOAD.ROUND (workload 0: segments, 1: ranges)")
	openFiles := flag.Int("open-files", 1000, "descriptors the origin keeps open between reads (ORIGIN_OPEN_FILES; nginx runs with open_file_cache)")
	withFloor := flag.Bool("floor", false, "also measure the least a Go server can do with the same system calls (no HTTP library): what the origin costs beyond it is its own, and what it costs beyond nginx is Go's")
	openFilesValid := flag.Duration("open-files-valid", time.Second, "how long the origin reuses a kept descriptor before it checks the file again (ORIGIN_OPEN_FILES_VALID; nginx's open_file_cache_valid is 60s)")
	withLoops := flag.Bool("event-loops", false, "also measure the floor's work done as nginx does it: an event loop per core (GOMAXPROCS of them), each with its own listening socket and epoll instance, no goroutine per connection")
	flag.Parse()
	if err := loadcmp.Check(); err != nil {
		return err
	}
	nginx, err := edge.Nginx()
	if err != nil {
		return err
	}

	dir, err := os.MkdirTemp("", "originbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// nginx's workers run as nobody: the tree must be readable by all.
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	root := filepath.Join(dir, "objects")
	objects, err := objectset.Write(root)
	if err != nil {
		return err
	}

	backend, err := storage.NewLocal(root, storage.KeepOpen(*openFiles), storage.RecheckKeptAfter(*openFilesValid))
	if err != nil {
		return err
	}
	srv, err := serve.New(serve.Config{Auth: serve.AuthNone, CORSOrigins: []string{"*"}}, []storage.Backend{backend},
		slog.New(slog.NewTextHandler(io.Discard, nil)), metrics.NewSet())
	if err != nil {
		return err
	}
	originAddr, stopOrigin, err := loadcmp.ServeOn(srv.HTTPServer(), srv.Listener)
	if err != nil {
		return err
	}
	defer stopOrigin()
	targets := []struct{ name, addr string }{{"nginx", ""}, {"origin", originAddr}}
	if *withFloor {
		floorAddr, stopFloor, err := startFloor(root)
		if err != nil {
			return err
		}
		defer stopFloor()
		targets = append(targets, struct{ name, addr string }{"floor", floorAddr})
	}
	if *withLoops {
		loopsAddr, stopLoops, err := startLoops(root, runtime.GOMAXPROCS(0))
		if err != nil {
			return err
		}
		defer stopLoops()
		targets = append(targets, struct{ name, addr string }{"loops", loopsAddr})
	}
	var serverCPUs, wrkCPUs string
	if *pin {
		n := runtime.NumCPU()
		if n < 2 {
			return errors.New("-pin needs at least 2 CPUs")
		}
		serverCPUs, wrkCPUs = fmt.Sprintf("0-%d", n/2-1), fmt.Sprintf("%d-%d", n/2, n-1)
		if *procs == 0 {
			*procs = n / 2
		}
	}
	if *procs > 0 {
		runtime.GOMAXPROCS(*procs) // the origin runs in this process
	}
	nginxAddr, nginxPID, stopNginx, err := staticnginx.Start(nginx, dir, root, *procs)
	if err != nil {
		return err
	}
	defer stopNginx()
	targets[0].addr = nginxAddr
	if *pin {
		// The origin runs in this process; wrk is started pinned apart.
		if err := loadcmp.Pin(serverCPUs, append([]int{os.Getpid(), nginxPID}, childPIDs(nginxPID)...)...); err != nil {
			return err
		}
		fmt.Printf("servers on CPUs %s (GOMAXPROCS and nginx workers %d), wrk on CPUs %s\n\n", serverCPUs, *procs, wrkCPUs)
	}
	// Server CPU per request separates each server's own cost from how
	// the machine's cores were shared with wrk.
	pids := map[string]func() []int{
		"nginx":  func() []int { return append([]int{nginxPID}, childPIDs(nginxPID)...) },
		"origin": func() []int { return []int{os.Getpid()} },
		"floor":  func() []int { return []int{os.Getpid()} },
		"loops":  func() []int { return []int{os.Getpid()} },
	}

	segScript, err := loadcmp.Script(segmentsLua(objects.Segments))
	if err != nil {
		return err
	}
	defer os.Remove(segScript)
	rangeScript, err := loadcmp.Script(rangesLua(objects.Original))
	if err != nil {
		return err
	}
	defer os.Remove(rangeScript)

	for wi, w := range []struct{ name, script string }{{"segments (~100 KB)", segScript}, {"1 MiB ranges of 10 MiB", rangeScript}} {
		results := map[string][]loadcmp.Result{}
		cpuPerReq := map[string][]float64{}
		// wrk's own CPU per request: on a shared machine what one server
		// saves can be spent by the load tool reading its answers.
		wrkPerReq := map[string][]float64{}
		idleShare := map[string][]float64{} // % of the machine's CPU time
		load := loadcmp.Options{Threads: *threads, Connections: *conns, Duration: *duration, Script: w.script, CPUs: wrkCPUs}
		for r := 0; r < *rounds; r++ {
			for _, target := range targets {
				var profile *os.File
				if target.name != "nginx" && *cpuProfile != "" {
					if profile, err = os.Create(fmt.Sprintf("%s.%s.%d.%d", *cpuProfile, target.name, wi, r)); err != nil {
						return err
					}
					if err := pprof.StartCPUProfile(profile); err != nil {
						profile.Close()
						return err
					}
				}
				cpuBefore := cpuSeconds(pids[target.name]())
				softBefore, idleBefore := machineSeconds()
				res, err := loadcmp.Run(ctx, "http://"+target.addr, load)
				cpu := cpuSeconds(pids[target.name]()) - cpuBefore
				softAfter, idleAfter := machineSeconds()
				soft := softAfter - softBefore
				idle := (idleAfter - idleBefore) / (float64(runtime.NumCPU()) * load.Duration.Seconds()) * 100
				if profile != nil {
					pprof.StopCPUProfile()
					if err := profile.Close(); err != nil {
						return err
					}
				}
				if err != nil {
					return err
				}
				if res.Non2xx3x > 0 {
					return fmt.Errorf("%s answered %d errors", target.name, res.Non2xx3x)
				}
				reqs := res.RPS * load.Duration.Seconds()
				perReq := cpu / reqs * 1e6
				fmt.Printf("%-24s round %d %-7s %9.0f req/s %10s/s  p50 %-8s p99 %-8s CPU µs/req: server %5.1f wrk %5.1f softirq %5.1f  idle %4.1f%%\n",
					w.name, r+1, target.name, res.RPS, res.Transfer, res.P50, res.P99, perReq,
					res.ClientCPU.Seconds()/reqs*1e6, soft/reqs*1e6, idle)
				results[target.name] = append(results[target.name], res)
				cpuPerReq[target.name] = append(cpuPerReq[target.name], perReq)
				wrkPerReq[target.name] = append(wrkPerReq[target.name], res.ClientCPU.Seconds()/reqs*1e6)
				idleShare[target.name] = append(idleShare[target.name], idle)
			}
		}
		n, o := loadcmp.Median(results["nginx"]), loadcmp.Median(results["origin"])
		fmt.Printf("\n%s: medians of %d rounds, %d connections, %d wrk threads, %s each\n", w.name, *rounds, *conns, *threads, *duration)
		fmt.Printf("  nginx  %9.0f req/s  p99 %-8s server CPU %5.1f µs/req  wrk %5.1f  idle %4.1f%%\n", n.RPS, n.P99,
			medianOf(cpuPerReq["nginx"]), medianOf(wrkPerReq["nginx"]), medianOf(idleShare["nginx"]))
		fmt.Printf("  origin %9.0f req/s  p99 %-8s server CPU %5.1f µs/req  wrk %5.1f  idle %4.1f%%\n", o.RPS, o.P99,
			medianOf(cpuPerReq["origin"]), medianOf(wrkPerReq["origin"]), medianOf(idleShare["origin"]))
		// Each round measures nginx and the origin a few seconds apart, so
		// its own ratio is less exposed to the machine's drift between
		// rounds than the ratio of the medians is.
		var roundRatios []float64
		for r := range results["origin"] {
			roundRatios = append(roundRatios, results["origin"][r].RPS/results["nginx"][r].RPS)
		}
		fmt.Printf("  ratio  %9.2f  (target >= 1.00; of each round: %s, median %.2f)\n",
			o.RPS/n.RPS, formatRatios(roundRatios), medianOf(roundRatios))
		if *withFloor {
			f := loadcmp.Median(results["floor"])
			fmt.Printf("  floor  %9.0f req/s  p99 %-8s server CPU %5.1f µs/req  wrk %5.1f  idle %4.1f%%  (origin/floor %.2f, floor/nginx %.2f)\n",
				f.RPS, f.P99, medianOf(cpuPerReq["floor"]), medianOf(wrkPerReq["floor"]), medianOf(idleShare["floor"]), o.RPS/f.RPS, f.RPS/n.RPS)
		}
		if *withLoops {
			l := loadcmp.Median(results["loops"])
			fmt.Printf("  loops  %9.0f req/s  p99 %-8s server CPU %5.1f µs/req  wrk %5.1f  idle %4.1f%%  (loops/nginx %.2f",
				l.RPS, l.P99, medianOf(cpuPerReq["loops"]), medianOf(wrkPerReq["loops"]), medianOf(idleShare["loops"]), l.RPS/n.RPS)
			if *withFloor {
				fmt.Printf(", loops/floor %.2f", l.RPS/loadcmp.Median(results["floor"]).RPS)
			}
			fmt.Println(")")
		}
		fmt.Println()
	}
	return nil
}

func segmentsLua(paths []string) string {
	var b strings.Builder
	b.WriteString("local paths = {\n")
	for _, p := range paths {
		fmt.Fprintf(&b, "  %q,\n", p)
	}
	b.WriteString("}\nlocal i = 0\nrequest = function()\n  i = i % #paths + 1\n  return wrk.format(\"GET\", paths[i])\nend\n")
	return b.String()
}

func rangesLua(path string) string {
	return fmt.Sprintf(`local i = 0
request = function()
  i = (i + 7) %% 10
  local first = i * 1048576
  return wrk.format("GET", %q, {["Range"] = "bytes=" .. first .. "-" .. (first + 1048575)})
end
`, path)
}

// cpuSeconds sums user and system CPU time of pids from /proc.
func cpuSeconds(pids []int) float64 {
	var ticks int64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// Fields after the parenthesised command: utime is the 12th, stime the 13th.
		fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		if len(fields) > 12 {
			u, _ := strconv.ParseInt(fields[11], 10, 64)
			s, _ := strconv.ParseInt(fields[12], 10, 64)
			ticks += u + s
		}
	}
	return float64(ticks) / 100 // USER_HZ
}

// machineSeconds is the machine's time in software interrupts, where
// Linux does much of loopback TCP's work, charged to no process, and its
// idle time (with iowait): a server that leaves cores idle while wrk
// waits on it is limited by how it schedules its work, not by its cost.
func machineSeconds() (softirq, idle float64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	fields := strings.Fields(line) // cpu user nice system idle iowait irq softirq
	if len(fields) < 8 {
		return 0, 0
	}
	tick := func(i int) float64 {
		t, _ := strconv.ParseInt(fields[i], 10, 64)
		return float64(t) / 100 // USER_HZ
	}
	return tick(7), tick(4) + tick(5)
}

func childPIDs(pid int) []int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

func formatRatios(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.FormatFloat(x, 'f', 2, 64)
	}
	return strings.Join(parts, " ")
}

func medianOf(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
