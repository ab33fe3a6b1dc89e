package purge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Client is one provider's purge API. paths are object paths without a
// leading slash; one ending in "/" stands for everything below it.
type Client interface {
	Purge(ctx context.Context, paths []string) error
}

// RetryableError marks a failure worth retrying (429, 5xx, the network).
type RetryableError struct{ Err error }

func (e *RetryableError) Error() string { return e.Err.Error() }
func (e *RetryableError) Unwrap() error { return e.Err }

// statusError classifies an HTTP answer from a purge API.
func statusError(provider string, resp *http.Response) error {
	if resp.StatusCode/100 == 2 {
		return nil
	}
	err := fmt.Errorf("purge: %s answered %s", provider, resp.Status)
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
		return &RetryableError{err}
	}
	return err
}

// callOnce asks client to purge paths within timeout. A failure is worth
// another try when it is a RetryableError (429, 5xx, the network).
func callOnce(ctx context.Context, client Client, timeout time.Duration, paths []string) (retryable bool, err error) {
	c, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err = client.Purge(c, paths)
	var retry *RetryableError
	return errors.As(err, &retry), err
}

// QueueConfig bounds a Queue.
type QueueConfig struct {
	Size        int           // pending purges before new ones are dropped (default 1000)
	MaxAttempts int           // per purge (default 6)
	Backoff     time.Duration // first retry delay, doubled each time (default 1s)
	Timeout     time.Duration // per API call (default 15s)
}

// Queue runs purges in the background: Purge returns at once, a worker
// calls the provider, retrying with exponential backoff and jitter on
// 429, 5xx and network errors. A full queue drops the purge (counted and
// logged): cached copies then expire with their TTL.
type Queue struct {
	cfg      QueueConfig
	client   Client
	log      *slog.Logger
	jobs     chan []string
	ok       *metrics.Counter
	failed   *metrics.Counter
	dropped  *metrics.Counter
	retried  *metrics.Counter
	provider string
}

// NewQueue builds a queue for provider's client. Run must be called.
func NewQueue(cfg QueueConfig, provider string, client Client, log *slog.Logger, set *metrics.Set) *Queue {
	if cfg.Size <= 0 {
		cfg.Size = 1000
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 6
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 15 * time.Second
	}
	counter := func(outcome string) *metrics.Counter { return outcomeCounter(set, provider, outcome) }
	return &Queue{cfg: cfg, client: client, log: log, provider: provider, jobs: make(chan []string, cfg.Size),
		ok: counter("purged"), failed: counter("failed"), dropped: counter("dropped"), retried: counter("retried")}
}

// Purge implements Purger without blocking.
func (q *Queue) Purge(_ context.Context, paths []string) {
	select {
	case q.jobs <- append([]string(nil), paths...):
	default:
		q.dropped.Inc()
		q.log.Error("cdn purge dropped: the purge queue is full", "provider", q.provider, "paths", paths)
	}
}

// Run works the queue until ctx ends.
func (q *Queue) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case paths := <-q.jobs:
			q.purge(ctx, paths)
		}
	}
}

func (q *Queue) purge(ctx context.Context, paths []string) {
	delay := q.cfg.Backoff
	for attempt := 1; ; attempt++ {
		retryable, err := callOnce(ctx, q.client, q.cfg.Timeout, paths)
		if err == nil {
			q.ok.Inc()
			q.log.Debug("cdn purged", "provider", q.provider, "paths", paths, "attempts", attempt)
			return
		}
		if !retryable || attempt >= q.cfg.MaxAttempts {
			q.failed.Inc()
			q.log.Error("cdn purge failed", "provider", q.provider, "paths", paths, "attempts", attempt, "err", err)
			return
		}
		q.retried.Inc()
		wait := delay + rand.N(delay/2+1)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		delay *= 2
	}
}
