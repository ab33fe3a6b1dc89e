package purge

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
)

// JobQueue is the river queue purge jobs run in, apart from packaging,
// so that a purge never waits behind a long package.
const JobQueue = "cdn_purge"

// Args is a purge job: object paths for the CDN to forget.
type Args struct {
	Paths []string `json:"paths"`
}

// Kind implements river.JobArgs.
func (Args) Kind() string { return "cdn_purge" }

// InsertOpts implements river.JobArgsWithInsertOpts.
func (Args) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: JobQueue, MaxAttempts: jobAttempts}
}

// jobAttempts with Worker's default backoff (1s doubled up to an hour,
// plus up to half again of jitter) retries a purge for four to six
// hours: through a provider's outage, not only a blip.
const jobAttempts = 16

// Inserter puts jobs in the job queue, alone or inside a transaction
// (hls.Queue). opts adds to the job's own InsertOpts; it may be nil.
type Inserter interface {
	Insert(ctx context.Context, args river.JobArgs) error
	InsertTx(ctx context.Context, tx pgx.Tx, args river.JobArgs, opts *river.InsertOpts) error
}

// Jobs is the Purger that runs purges as jobs in PostgreSQL: a purge
// survives the api's restart and a provider's outage, and none is dropped
// because many are pending. The workers that run them (Worker) are the
// packaging workers' (api worker, or WORKER_CONCURRENCY in api serve).
type Jobs struct {
	queue   Inserter
	expand  Expander
	log     *slog.Logger
	dropped *metrics.Counter
}

// Expander is a purge API that forgets objects one by one, not whole
// directories (SelfHosted): Expand lists the objects below each directory
// in paths. Jobs expands a purge when it queues it, so that a job queued
// by a delete names the objects the delete is about to remove, which the
// job, running later, could no longer list.
type Expander interface {
	Expand(ctx context.Context, paths []string) ([]string, error)
}

// NewJobs builds the Purger that inserts jobs in queue. expand, which may
// be nil, expands purges for a provider that needs it.
func NewJobs(queue Inserter, expand Expander, provider string, log *slog.Logger, set *metrics.Set) *Jobs {
	return &Jobs{queue: queue, expand: expand, log: log, dropped: outcomeCounter(set, provider, "dropped")}
}

// expanded is paths with their directories expanded, or paths as they
// are when there is no Expander or it fails (logged): the job then lists
// the directories when it runs.
func (j *Jobs) expanded(ctx context.Context, paths []string) []string {
	if j.expand == nil {
		return paths
	}
	keys, err := j.expand.Expand(ctx, paths)
	if err != nil {
		j.log.Warn("cdn purge: cannot list what it purges now; the job will", "paths", paths, "err", err)
		return paths
	}
	return keys
}

// Purge implements Purger: one insert, which a failing database drops
// (counted and logged).
func (j *Jobs) Purge(ctx context.Context, paths []string) {
	paths = j.expanded(ctx, paths)
	if len(paths) == 0 {
		return
	}
	if err := j.queue.Insert(ctx, Args{Paths: paths}); err != nil {
		j.dropped.Inc()
		j.log.Error("cdn purge dropped: cannot queue it", "paths", paths, "err", err)
	}
}

// PurgeTx implements TxPurger: the job is inserted in tx, and a failing
// insert fails the write with it.
func (j *Jobs) PurgeTx(ctx context.Context, tx pgx.Tx, paths []string) error {
	return j.PurgeTxAt(ctx, tx, paths, time.Time{})
}

// PurgeTxAt implements TxPurger: one job per time is inserted in tx,
// scheduled to run then (the zero time: at once), all naming the paths
// as expanded once, and a failing insert fails the write with it.
func (j *Jobs) PurgeTxAt(ctx context.Context, tx pgx.Tx, paths []string, times ...time.Time) error {
	paths = j.expanded(ctx, paths)
	if len(paths) == 0 {
		return nil
	}
	for _, at := range times {
		if err := j.queue.InsertTx(ctx, tx, Args{Paths: paths}, &river.InsertOpts{ScheduledAt: at}); err != nil {
			return fmt.Errorf("purge: cannot queue a purge of %v: %w", paths, err)
		}
	}
	return nil
}

// WorkerConfig tunes a Worker.
type WorkerConfig struct {
	Backoff time.Duration // first retry delay, doubled each time, at most an hour (default 1s)
	Timeout time.Duration // per API call (default 15s)
}

// Worker runs purge jobs against a provider's purge API, retrying 429,
// 5xx and network errors with exponential backoff and jitter, and giving
// up at once on any other answer.
type Worker struct {
	river.WorkerDefaults[Args]
	cfg      WorkerConfig
	client   Client
	provider string
	log      *slog.Logger
	ok       *metrics.Counter
	failed   *metrics.Counter
	retried  *metrics.Counter
}

// NewWorker builds the worker for provider's client.
func NewWorker(cfg WorkerConfig, provider string, client Client, log *slog.Logger, set *metrics.Set) *Worker {
	if cfg.Backoff <= 0 {
		cfg.Backoff = time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 15 * time.Second
	}
	return &Worker{cfg: cfg, client: client, provider: provider, log: log,
		ok: outcomeCounter(set, provider, "purged"), failed: outcomeCounter(set, provider, "failed"),
		retried: outcomeCounter(set, provider, "retried")}
}

// Work implements river.Worker.
func (w *Worker) Work(ctx context.Context, job *river.Job[Args]) error {
	retryable, err := callOnce(ctx, w.client, w.cfg.Timeout, job.Args.Paths)
	if err == nil {
		w.ok.Inc()
		return nil
	}
	if !retryable || job.Attempt >= job.MaxAttempts {
		w.failed.Inc()
		w.log.Error("cdn purge failed", "provider", w.provider, "paths", job.Args.Paths, "attempts", job.Attempt, "err", err)
		return river.JobCancel(err)
	}
	w.retried.Inc()
	return err
}

// NextRetry implements river.Worker: the backoff of WorkerConfig, not
// river's default (attempt⁴ seconds), so that the first retries are quick.
func (w *Worker) NextRetry(job *river.Job[Args]) time.Time {
	delay := min(w.cfg.Backoff<<min(job.Attempt-1, 20), time.Hour)
	return time.Now().Add(delay + rand.N(delay/2+1))
}

// Register adds the worker to workers, and returns the queue it runs in,
// with concurrency purges at once (hls.QueueConfig.Extra).
func (w *Worker) Register(workers *river.Workers, concurrency int) map[string]river.QueueConfig {
	river.AddWorker(workers, w)
	return map[string]river.QueueConfig{JobQueue: {MaxWorkers: concurrency}}
}

func outcomeCounter(set *metrics.Set, provider, outcome string) *metrics.Counter {
	return set.GetOrCreateCounter(fmt.Sprintf(`playgate_api_purges_total{provider=%q,outcome=%q}`, provider, outcome))
}

var _ river.Worker[Args] = (*Worker)(nil)
