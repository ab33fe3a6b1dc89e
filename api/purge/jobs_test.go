package purge

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/playgate/playgate/internal/pgtest"
)

var pg *pgtest.Server

func TestMain(m *testing.M) { pgtest.Main(m, &pg) }

// riverClient is a river client on pool: with w's worker when w is not
// nil and started, insert-only otherwise.
func riverClient(t *testing.T, pool *pgxpool.Pool, w *Worker) *river.Client[pgx.Tx] {
	t.Helper()
	rc := &river.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if w != nil {
		rc.Workers = river.NewWorkers()
		rc.Queues = w.Register(rc.Workers, 2)
	}
	c, err := river.NewClient(riverpgxv5.New(pool), rc)
	require.NoError(t, err)
	if w != nil {
		require.NoError(t, c.Start(context.Background()))
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = c.Stop(ctx)
		})
	}
	return c
}

func newPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), pg.NewDatabase(t))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

// clientQueue is an Inserter on a river client, as hls.Queue is.
type clientQueue struct{ c *river.Client[pgx.Tx] }

func (q clientQueue) Insert(ctx context.Context, args river.JobArgs) error {
	_, err := q.c.Insert(ctx, args, nil)
	return err
}

func (q clientQueue) InsertTx(ctx context.Context, tx pgx.Tx, args river.JobArgs, opts *river.InsertOpts) error {
	_, err := q.c.InsertTx(ctx, tx, args, opts)
	return err
}

// refusingQueue is a database that takes no insert.
type refusingQueue struct{}

func (refusingQueue) Insert(context.Context, river.JobArgs) error { return context.DeadlineExceeded }

func (refusingQueue) InsertTx(context.Context, pgx.Tx, river.JobArgs, *river.InsertOpts) error {
	return context.DeadlineExceeded
}

// A purge asked for while no worker runs (the api restarting, or the
// workers) is done once one does: it waits in PostgreSQL, not in memory.
func TestJobsSurviveUntilAWorkerRuns(t *testing.T) {
	q := newQueuedPurges(t)
	q.jobs.Purge(context.Background(), paths)
	assert.Empty(t, q.reqs(), "nothing runs purges yet")

	q.startWorker(t)
	require.Eventually(t, func() bool { return counter(q.set, "purged") == 1 }, 30*time.Second, 20*time.Millisecond)
	got := q.reqs()
	require.Len(t, got, 2, "one request per path")
	assert.Contains(t, got[0].query, "url=https%3A%2F%2Fz.b-cdn.net%2Ftracks%2Ft1%2Fabc.mp3")
	assert.Zero(t, counter(q.set, "dropped"))
}

// queuedPurges is Jobs on a job queue in a database of its own, with no
// worker yet, and the fake Bunny API a worker would call.
type queuedPurges struct {
	pool *pgxpool.Pool
	api  string
	reqs func() []recorded
	set  *metrics.Set
	jobs *Jobs
}

func newQueuedPurges(t *testing.T) *queuedPurges {
	t.Helper()
	q := &queuedPurges{pool: newPool(t), set: metrics.NewSet()}
	srv, reqs := fakeAPI(t)
	q.api, q.reqs = srv.URL, reqs
	q.jobs = NewJobs(clientQueue{riverClient(t, q.pool, nil)}, nil, "bunny", slog.New(slog.NewTextHandler(io.Discard, nil)), q.set)
	return q
}

// startWorker runs the purge jobs.
func (q *queuedPurges) startWorker(t *testing.T) {
	riverClient(t, q.pool, NewWorker(WorkerConfig{}, "bunny", &Bunny{API: q.api, ZoneURL: "https://z.b-cdn.net", Key: "k"},
		slog.New(slog.NewTextHandler(io.Discard, nil)), q.set))
}

// 429 and 5xx are retried with the worker's backoff; other answers end
// the job at once.
func TestJobRetries(t *testing.T) {
	for _, c := range []struct {
		name     string
		statuses []int
		purged   uint64
		failed   uint64
		retried  uint64
		requests int
	}{
		{"through an outage", []int{http.StatusTooManyRequests, http.StatusBadGateway}, 1, 0, 2, 3},
		{"refused", []int{http.StatusUnauthorized}, 0, 1, 0, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			pool := newPool(t)
			srv, reqs := fakeAPI(t, c.statuses...)
			set := metrics.NewSet()
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			w := NewWorker(WorkerConfig{Backoff: 10 * time.Millisecond}, "bunny", &Bunny{API: srv.URL, ZoneURL: "https://z.b-cdn.net", Key: "k"}, log, set)
			client := riverClient(t, pool, w)
			NewJobs(clientQueue{client}, nil, "bunny", log, set).Purge(context.Background(), paths[:1])
			require.Eventually(t, func() bool { return counter(set, "purged")+counter(set, "failed") == 1 },
				30*time.Second, 20*time.Millisecond)
			assert.Equal(t, c.purged, counter(set, "purged"))
			assert.Equal(t, c.failed, counter(set, "failed"))
			assert.Equal(t, c.retried, counter(set, "retried"))
			assert.Len(t, reqs(), c.requests)
		})
	}
}

// A database that refuses the insert drops the purge, counted.
func TestJobsCountWhatTheyDrop(t *testing.T) {
	set := metrics.NewSet()
	jobs := NewJobs(refusingQueue{}, nil, "bunny", slog.New(slog.NewTextHandler(io.Discard, nil)), set)
	jobs.Purge(context.Background(), paths)
	assert.EqualValues(t, 1, counter(set, "dropped"))
	// In a write's transaction, the refusal fails the write instead.
	assert.ErrorIs(t, jobs.PurgeTx(context.Background(), nil, paths), context.DeadlineExceeded)
	assert.EqualValues(t, 1, counter(set, "dropped"))
}

// A purge queued in a transaction exists when it commits, and not when
// it rolls back: it goes with the write that caused it.
func TestPurgeTxGoesWithItsTransaction(t *testing.T) {
	q := newQueuedPurges(t)
	ctx := context.Background()
	for _, commit := range []bool{false, true} {
		tx, err := q.pool.Begin(ctx)
		require.NoError(t, err)
		p := "tracks/t1/rolled-back.mp3"
		if commit {
			p = "tracks/t1/committed.mp3"
		}
		require.NoError(t, q.jobs.PurgeTx(ctx, tx, []string{p}))
		if commit {
			require.NoError(t, tx.Commit(ctx))
		} else {
			require.NoError(t, tx.Rollback(ctx))
		}
	}
	q.startWorker(t)
	require.Eventually(t, func() bool { return counter(q.set, "purged") == 1 }, 30*time.Second, 20*time.Millisecond)
	got := q.reqs()
	require.Len(t, got, 1)
	assert.Contains(t, got[0].query, "committed.mp3")
	time.Sleep(200 * time.Millisecond)
	assert.Len(t, q.reqs(), 1, "the rolled-back purge never runs")
}

// A purge queued for later in a transaction commits with it, waits in
// PostgreSQL for its time, and runs then.
func TestPurgeTxAtWaitsForItsTime(t *testing.T) {
	q := newQueuedPurges(t)
	ctx := context.Background()
	at := time.Now().Add(2 * time.Second)
	tx, err := q.pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, q.jobs.PurgeTxAt(ctx, tx, paths[:1], at))
	require.NoError(t, tx.Commit(ctx))
	var state string
	var scheduled time.Time
	require.NoError(t, q.pool.QueryRow(ctx, `SELECT state, scheduled_at FROM river_job WHERE kind = $1`, Args{}.Kind()).
		Scan(&state, &scheduled))
	assert.Equal(t, string(rivertype.JobStateScheduled), state)
	assert.WithinDuration(t, at, scheduled, time.Millisecond)

	q.startWorker(t)
	require.Eventually(t, func() bool { return counter(q.set, "purged") == 1 }, 30*time.Second, 20*time.Millisecond)
	got := q.reqs()
	require.Len(t, got, 1)
	assert.False(t, got[0].at.Before(at), "asked at %s, %s before its time", got[0].at, at.Sub(got[0].at))
}

// For a provider that forgets objects one by one (the self-hosted edge),
// a purge's directories are listed when it is queued: a job a delete
// queues names the objects the delete removes right after, which the job
// could not list when it runs, and its purges now and later share one
// listing. Should storage not answer, the job lists them when it runs; a
// directory with nothing below it needs no job.
func TestJobsExpandWhenQueued(t *testing.T) {
	q := newQueuedPurges(t)
	storageDown, lists := false, 0
	q.jobs.expand = &SelfHosted{List: func(_ context.Context, prefix string) ([]string, error) {
		lists++
		if storageDown {
			return nil, errors.New("storage is down")
		}
		if prefix == "hls/t1/" {
			return []string{"hls/t1/p1/a.m4s", "hls/t1/p1/b.m4s"}, nil
		}
		return nil, nil
	}}
	ctx := context.Background()
	tx, err := q.pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, q.jobs.PurgeTx(ctx, tx, []string{"tracks/t1/x.mp3", "hls/t1/"}))
	require.NoError(t, q.jobs.PurgeTxAt(ctx, tx, []string{"hls/t1/"}, time.Now().Add(time.Hour)))
	require.NoError(t, q.jobs.PurgeTx(ctx, tx, []string{"hls/t2/"}))
	// A delete's purges, now and later, list storage once.
	lists = 0
	require.NoError(t, q.jobs.PurgeTxAt(ctx, tx, []string{"tracks/t1/x.mp3", "hls/t1/"}, time.Time{}, time.Now().Add(time.Hour)))
	assert.Equal(t, 1, lists, "listings for two purges")
	storageDown = true
	require.NoError(t, q.jobs.PurgeTx(ctx, tx, []string{"hls/t1/"}))
	require.NoError(t, tx.Commit(ctx))

	rows, err := q.pool.Query(ctx, `SELECT args FROM river_job WHERE kind = $1 ORDER BY id`, Args{}.Kind())
	require.NoError(t, err)
	var got [][]string
	for rows.Next() {
		var a Args
		require.NoError(t, rows.Scan(&a))
		got = append(got, a.Paths)
	}
	require.NoError(t, rows.Err())
	assert.Equal(t, [][]string{
		{"tracks/t1/x.mp3", "hls/t1/p1/a.m4s", "hls/t1/p1/b.m4s"},
		{"hls/t1/p1/a.m4s", "hls/t1/p1/b.m4s"},
		{"tracks/t1/x.mp3", "hls/t1/p1/a.m4s", "hls/t1/p1/b.m4s"},
		{"tracks/t1/x.mp3", "hls/t1/p1/a.m4s", "hls/t1/p1/b.m4s"},
		{"hls/t1/"},
	}, got)
}

func TestNextRetryBacksOff(t *testing.T) {
	w := NewWorker(WorkerConfig{Backoff: time.Second}, "bunny", nil, slog.New(slog.NewTextHandler(io.Discard, nil)), metrics.NewSet())
	for attempt, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 5: 16 * time.Second, 13: time.Hour, 40: time.Hour} {
		job := &river.Job[Args]{JobRow: &rivertype.JobRow{Attempt: attempt}}
		delay := time.Until(w.NextRetry(job))
		assert.GreaterOrEqual(t, delay, want-time.Second/10, "attempt %d", attempt)
		assert.LessOrEqual(t, delay, want+want/2, "attempt %d: jitter is at most half", attempt)
	}
}
