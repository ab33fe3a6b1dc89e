// Package load is bench's engine. It drives a request function from many
// goroutines for a duration, in one of two models:
//
//   - closed loop: N workers, each sending its next request when the last
//     answered (the throughput a server sustains);
//   - open model: requests scheduled at a constant rate whatever the
//     server does, latency measured from each request's intended start,
//     so a stalled server shows its full tail instead of hiding it
//     (coordinated omission).
//
// Observations made during the warm-up are discarded.
package load

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/playgate/playgate/bench/internal/hist"
)

// Do sends one request (or one session) for a worker and returns its
// status (0 with err for a transport failure). ctx ends with the run: a Do
// that waits (a paced player) returns early when it is done, and what it
// returns then is not a result.
type Do func(ctx context.Context, worker int) (status int, err error)

// Config is one run.
type Config struct {
	Workers  int           // concurrent requests (connections)
	Rate     float64       // requests/s for the open model; 0: closed loop
	Duration time.Duration // measured time, after Warmup
	Warmup   time.Duration
}

// Point is one second of a run, for progress and plots.
type Point struct {
	At    time.Duration // since measuring began
	Rate  float64       // answers/s in that second
	P50   time.Duration
	P99   time.Duration
	Error uint64
}

// Result is what a run measured.
type Result struct {
	Latency  *hist.Histogram
	ByStatus map[int]uint64
	Errors   uint64
	Requests uint64
	Elapsed  time.Duration
	Timeline []Point
}

// RPS is the measured answers per second.
func (r *Result) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

type worker struct {
	mu       sync.Mutex
	all      *hist.Histogram
	second   *hist.Histogram
	byStatus map[int]uint64
	errors   uint64
	secErr   uint64
}

func (w *worker) record(d time.Duration, status int, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.errors++
		w.secErr++
		return
	}
	w.all.Record(d)
	w.second.Record(d)
	w.byStatus[status]++
}

// Run runs cfg against do. progress, if not nil, is called once a second
// with the latest point.
func Run(ctx context.Context, cfg Config, do Do, progress func(Point)) *Result {
	cfg.Workers = max(cfg.Workers, 1)
	workers := make([]*worker, cfg.Workers)
	for i := range workers {
		workers[i] = &worker{all: hist.New(), second: hist.New(), byStatus: map[int]uint64{}}
	}
	start := time.Now()
	measureFrom := start.Add(cfg.Warmup)
	end := measureFrom.Add(cfg.Duration)
	var measuring atomic.Bool

	ctx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	var wg sync.WaitGroup
	observe := func(w *worker, i int, intended time.Time) {
		status, err := do(ctx, i)
		if measuring.Load() && ctx.Err() == nil {
			w.record(time.Since(intended), status, err)
		}
	}
	if cfg.Rate <= 0 {
		for i, w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					observe(w, i, time.Now())
				}
			}()
		}
	} else {
		// One scheduler hands intended start times to the workers; a
		// worker late to pick one up still measures from the intended time.
		slots := make(chan time.Time, cfg.Workers*4)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(slots)
			interval := time.Duration(float64(time.Second) / cfg.Rate)
			next := time.Now()
			for ctx.Err() == nil {
				if d := time.Until(next); d > 0 {
					time.Sleep(d)
				}
				select {
				case slots <- next:
				case <-ctx.Done():
					return
				}
				next = next.Add(interval)
			}
		}()
		for i, w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for intended := range slots {
					observe(w, i, intended)
				}
			}()
		}
	}

	res := &Result{Latency: hist.New(), ByStatus: map[int]uint64{}}
	if d := time.Until(measureFrom); d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
	}
	// Start measuring: whatever the warm-up recorded goes.
	for _, w := range workers {
		w.mu.Lock()
		w.second = hist.New()
		w.secErr = 0
		w.mu.Unlock()
	}
	measuring.Store(true)
	began := time.Now()
	last := began
	// The ticker starts with the measurement: a tick from the warm-up
	// would carry a time before began.
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case now := <-ticker.C:
			p := collect(workers, now.Sub(began), now.Sub(last))
			last = now
			res.Timeline = append(res.Timeline, p)
			if progress != nil {
				progress(p)
			}
		}
	}
	wg.Wait()
	res.Elapsed = time.Since(began)
	for _, w := range workers {
		res.Latency.Merge(w.all)
		for s, n := range w.byStatus {
			res.ByStatus[s] += n
		}
		res.Errors += w.errors
	}
	res.Requests = res.Latency.Count() + res.Errors
	return res
}

// collect takes the last second's observations from every worker.
func collect(workers []*worker, at, span time.Duration) Point {
	sec := hist.New()
	var errs uint64
	for _, w := range workers {
		w.mu.Lock()
		sec.Merge(w.second)
		w.second = hist.New()
		errs += w.secErr
		w.secErr = 0
		w.mu.Unlock()
	}
	return Point{At: at, Rate: float64(sec.Count()) / span.Seconds(), P50: sec.Quantile(0.5), P99: sec.Quantile(0.99), Error: errs}
}
