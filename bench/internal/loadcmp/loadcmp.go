// Package loadcmp is the plumbing of the comparison benchmarks, which
// measure a playgate service against its ceiling (a bare handler, nginx)
// with the same load tool in the same run: it runs wrk and reads its
// report, and serves the servers under test on loopback.
package loadcmp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/playgate/playgate/internal/ops"
)

// Check fails with how to install wrk when it is missing.
func Check() error {
	if _, err := exec.LookPath("wrk"); err != nil {
		return errors.New("wrk is needed: apt-get install -y wrk")
	}
	return nil
}

// Options is one wrk run.
type Options struct {
	Threads, Connections int
	Duration             time.Duration
	Script               string // a Lua file, or ""
	// CPUs, if set, confines wrk to these CPUs (taskset's list form),
	// so that it does not compete with the server for its cores.
	CPUs string
}

// Result is what one run measured.
type Result struct {
	RPS      float64
	P50, P99 string
	Non2xx3x int
	Transfer string // per second
	// ClientCPU is the CPU time wrk itself used: on a shared machine the
	// load generator's cost per request is part of what a server's
	// answers cost.
	ClientCPU time.Duration
}

var (
	rpsRe      = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	p50Re      = regexp.MustCompile(`\n\s+50%\s+(\S+)`)
	p99Re      = regexp.MustCompile(`\n\s+99%\s+(\S+)`)
	non2xxRe   = regexp.MustCompile(`Non-2xx or 3xx responses:\s+(\d+)`)
	transferRe = regexp.MustCompile(`Transfer/sec:\s+(\S+)`)
)

// Run loads url; cancelling ctx stops wrk.
func Run(ctx context.Context, url string, o Options) (Result, error) {
	args := []string{"-t", strconv.Itoa(o.Threads), "-c", strconv.Itoa(o.Connections), "-d", o.Duration.String(), "--latency"}
	if o.Script != "" {
		args = append(args, "-s", o.Script)
	}
	name, argv := "wrk", append(args, url)
	if o.CPUs != "" {
		name, argv = "taskset", append([]string{"-c", o.CPUs, "wrk"}, argv...)
	}
	cmd := exec.CommandContext(ctx, name, argv...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return Result{}, ctx.Err()
	}
	if err != nil {
		return Result{}, fmt.Errorf("wrk: %w: %s", err, out)
	}
	m := rpsRe.FindSubmatch(out)
	if m == nil {
		return Result{}, fmt.Errorf("wrk printed no rate: %s", out)
	}
	var r Result
	r.ClientCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	r.RPS, _ = strconv.ParseFloat(string(m[1]), 64)
	if m := p50Re.FindSubmatch(out); m != nil {
		r.P50 = string(m[1])
	}
	if m := p99Re.FindSubmatch(out); m != nil {
		r.P99 = string(m[1])
	}
	if m := transferRe.FindSubmatch(out); m != nil {
		r.Transfer = string(m[1])
	}
	if m := non2xxRe.FindSubmatch(out); m != nil {
		r.Non2xx3x, _ = strconv.Atoi(string(bytes.TrimSpace(m[1])))
	}
	return r, nil
}

// Pin confines every thread of the processes pids to cpus (taskset's
// list form); threads they start later inherit it.
func Pin(cpus string, pids ...int) error {
	for _, pid := range pids {
		if out, err := exec.Command("taskset", "-a", "-p", "-c", cpus, strconv.Itoa(pid)).CombinedOutput(); err != nil {
			return fmt.Errorf("taskset %s %d: %w: %s", cpus, pid, err, out)
		}
	}
	return nil
}

// Median is the run with the median rate, with its latencies.
func Median(rs []Result) Result {
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b Result) int {
		switch {
		case a.RPS < b.RPS:
			return -1
		case a.RPS > b.RPS:
			return 1
		}
		return 0
	})
	return s[len(s)/2]
}

// Serve runs srv on a free loopback port and returns its address and a
// function that stops it.
func Serve(srv *fasthttp.Server) (string, func(), error) {
	return ServeOn(srv, nil)
}

// ServeOn is Serve on the listener wrap returns (nil: the plain one), as
// the origin's Listener, which sends files with sendfile(2).
func ServeOn(srv *fasthttp.Server, wrap func(net.Listener) net.Listener) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	served := ln
	if wrap != nil {
		served = wrap(ln)
	}
	go func() { _ = ops.Serve(ctx, srv, served, 5*time.Second); close(done) }()
	return ln.Addr().String(), func() { cancel(); <-done }, nil
}

// Script writes a Lua script to a temporary file and returns its path.
func Script(lua string) (string, error) {
	f, err := os.CreateTemp("", "wrk-*.lua")
	if err != nil {
		return "", err
	}
	defer f.Close()
	_, err = f.WriteString(lua)
	return f.Name(), err
}

// Bare302 is the signer's ceiling (SPEC §12): the least a fasthttp server
// can do for a play, a constant redirect of a realistic length.
func Bare302(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.SetStatusCode(fasthttp.StatusFound)
	ctx.Response.Header.Set(fasthttp.HeaderLocation,
		"https://zone.b-cdn.net/tracks/0190a0b4-0000-7000-8000-000000000001/c4ff534378040eca27f54b542bba32f42fc498315cf88621c6a282e4e1274bf3.mp3?token=HS256-o10JRWlsAItyAsdKS6jJKjabHN4FrFsplDHPV1idcX4&expires=1598024587")
}
