package hls

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/VictoriaMetrics/metrics"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"github.com/playgate/playgate/api/catalog"
	"github.com/playgate/playgate/origin/storage"
)

// PackageArgs is the job that packages one track's audio. One exists per
// (track, source hash) while it is pending.
type PackageArgs struct {
	TrackID      uuid.UUID `json:"track_id"`
	SourceSHA256 string    `json:"source_sha256"`
	// Refresh re-packages a ready track with the worker's settings,
	// serving its package until the new one is ready (Queue.Refresh).
	Refresh bool `json:"refresh,omitempty"`
}

// Kind implements river.JobArgs.
func (PackageArgs) Kind() string { return "hls_package" }

// InsertOpts makes the job unique per track and source while it is not
// finished, with retries and backoff from river's default policy.
func (PackageArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{
		MaxAttempts: 5,
		UniqueOpts:  river.UniqueOpts{ByArgs: true, ByState: unfinished()},
	}
}

// unfinished are the states of a job that has not ended yet: what a
// unique job is unique among, and what a pending one is in.
func unfinished() []rivertype.JobState {
	return []rivertype.JobState{rivertype.JobStateAvailable, rivertype.JobStatePending,
		rivertype.JobStateRetryable, rivertype.JobStateRunning, rivertype.JobStateScheduled}
}

// CollectArgs deletes a package that was replaced, after a grace period
// in which players that started on it can finish.
type CollectArgs struct {
	TrackID uuid.UUID `json:"track_id"`
	Backend string    `json:"backend"`
	Prefix  string    `json:"prefix"` // "hls/{track}/{package}"
}

// Kind implements river.JobArgs.
func (CollectArgs) Kind() string { return "hls_collect" }

// QueueConfig configures the job queue.
type QueueConfig struct {
	// Workers is how many packages this process makes at once; 0 makes
	// an insert-only queue (the api with WORKER_CONCURRENCY=0).
	Workers int
	// CollectAfter is the grace period before a replaced package goes.
	CollectAfter time.Duration
	// StopTimeout is how long a stopping worker lets its jobs run before
	// it interrupts them, to be taken up at once by another worker.
	// Default 30s.
	StopTimeout time.Duration
	// Extra adds other packages' jobs to the workers' client (Workers >
	// 0): it registers their workers and returns the queues they run in
	// (purge.Worker.Register). A process has one client, so that whichever
	// river elects leader schedules the periodic sweep.
	Extra func(*river.Workers) map[string]river.QueueConfig
	// SweepAfter is how old what an upload left in storage must be before
	// the hourly sweep removes it (SweepArgs): longer than any upload
	// takes. Default 24h.
	SweepAfter time.Duration
}

// Queue is the packaging job queue in PostgreSQL (river).
type Queue struct {
	client *river.Client[pgx.Tx]
}

// NewQueue builds the queue. packager may be nil when cfg.Workers is 0.
func NewQueue(cfg QueueConfig, pool *pgxpool.Pool, store *catalog.Store, backends map[string]storage.Backend,
	packager *Packager, log *slog.Logger, set *metrics.Set) (*Queue, error) {
	rc := &river.Config{Logger: log.With("component", "queue")}
	if cfg.Workers > 0 {
		if packager == nil {
			return nil, errors.New("hls: workers need a packager")
		}
		if cfg.CollectAfter <= 0 {
			cfg.CollectAfter = 24 * time.Hour
		}
		if cfg.SweepAfter <= 0 {
			cfg.SweepAfter = 24 * time.Hour
		}
		if cfg.StopTimeout <= 0 {
			cfg.StopTimeout = 30 * time.Second
		}
		workers := river.NewWorkers()
		river.AddWorker(workers, &packageWorker{store: store, backends: backends, packager: packager, log: log,
			collectAfter: cfg.CollectAfter, metrics: newJobMetrics(set)})
		river.AddWorker(workers, &collectWorker{store: store, backends: backends, log: log})
		river.AddWorker(workers, newSweepWorker(backends, cfg.SweepAfter, log, set))
		rc.Workers = workers
		// The elected leader among the workers inserts the sweep, once at
		// its start and hourly after.
		rc.PeriodicJobs = []*river.PeriodicJob{river.NewPeriodicJob(river.PeriodicInterval(sweepInterval),
			func() (river.JobArgs, *river.InsertOpts) { return SweepArgs{}, nil },
			&river.PeriodicJobOpts{ID: SweepArgs{}.Kind(), RunOnStart: true})}
		rc.Queues = map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: cfg.Workers}}
		if cfg.Extra != nil {
			maps.Copy(rc.Queues, cfg.Extra(workers))
		}
		// A package of a long track takes minutes; river's default job
		// timeout is one minute.
		rc.JobTimeout = packager.cfg.Timeout + 10*time.Minute
		// Without it, Stop waits for every job, and a job still running
		// when the process exits stays "running" until river's rescuer
		// finds it, an hour past JobTimeout. Interrupted, it is snoozed
		// (packageWorker.fail) and another worker starts it at once.
		rc.SoftStopTimeout = cfg.StopTimeout
	}
	client, err := river.NewClient(riverpgxv5.New(pool), rc)
	if err != nil {
		return nil, fmt.Errorf("hls: %w", err)
	}
	return &Queue{client: client}, nil
}

// Enqueue implements catalog.Enqueue.
func (q *Queue) Enqueue(ctx context.Context, tx pgx.Tx, track uuid.UUID, sourceSHA256 string) error {
	_, err := q.client.InsertTx(ctx, tx, PackageArgs{TrackID: track, SourceSHA256: sourceSHA256}, nil)
	if err != nil {
		return fmt.Errorf("hls: cannot queue packaging of %s: %w", track, err)
	}
	return nil
}

// Refresh queues the re-packaging of a ready track's audio with the
// workers' settings (api repackage), after HLS_RENDITIONS changed: the
// track keeps its package until the new one replaces it.
func (q *Queue) Refresh(ctx context.Context, track uuid.UUID, sourceSHA256 string) error {
	_, err := q.client.Insert(ctx, PackageArgs{TrackID: track, SourceSHA256: sourceSHA256, Refresh: true}, nil)
	if err != nil {
		return fmt.Errorf("hls: cannot queue re-packaging of %s: %w", track, err)
	}
	return nil
}

// Insert queues a job of another package (QueueConfig.Extra's).
func (q *Queue) Insert(ctx context.Context, args river.JobArgs) error {
	_, err := q.client.Insert(ctx, args, nil)
	return err
}

// InsertTx queues a job of another package inside tx: it exists once tx
// commits, and not if it does not. opts (which may be nil) adds to the
// job's own InsertOpts, as in river.
func (q *Queue) InsertTx(ctx context.Context, tx pgx.Tx, args river.JobArgs, opts *river.InsertOpts) error {
	_, err := q.client.InsertTx(ctx, tx, args, opts)
	return err
}

// PendingCollections returns the prefixes of replaced packages that are
// waiting out their grace period: no track names them, and players may
// still be on them.
func (q *Queue) PendingCollections(ctx context.Context) (map[string]bool, error) {
	params := river.NewJobListParams().Kinds(CollectArgs{}.Kind()).States(unfinished()...).First(1000)
	out := map[string]bool{}
	for {
		res, err := q.client.JobList(ctx, params)
		if err != nil {
			return nil, fmt.Errorf("hls: cannot list pending collections: %w", err)
		}
		for _, j := range res.Jobs {
			var a CollectArgs
			if err := json.Unmarshal(j.EncodedArgs, &a); err != nil {
				return nil, fmt.Errorf("hls: collection job %d: %w", j.ID, err)
			}
			out[a.Prefix] = true
		}
		if len(res.Jobs) < 1000 {
			return out, nil
		}
		params = params.After(res.LastCursor)
	}
}

// Start starts the workers (if any).
func (q *Queue) Start(ctx context.Context) error { return q.client.Start(ctx) }

// Stop lets running jobs finish, up to ctx's deadline.
func (q *Queue) Stop(ctx context.Context) error { return q.client.Stop(ctx) }

type jobMetrics struct {
	ok, failed, obsolete, interrupted *metrics.Counter
	duration                          *metrics.PrometheusHistogram
}

func newJobMetrics(set *metrics.Set) jobMetrics {
	return jobMetrics{
		ok:          set.NewCounter(`playgate_api_packaging_jobs_total{outcome="ready"}`),
		failed:      set.NewCounter(`playgate_api_packaging_jobs_total{outcome="failed"}`),
		obsolete:    set.NewCounter(`playgate_api_packaging_jobs_total{outcome="obsolete"}`),
		interrupted: set.NewCounter(`playgate_api_packaging_jobs_total{outcome="interrupted"}`),
		duration:    set.NewPrometheusHistogram(`playgate_api_packaging_duration_seconds`),
	}
}

type packageWorker struct {
	river.WorkerDefaults[PackageArgs]
	store        *catalog.Store
	backends     map[string]storage.Backend
	packager     *Packager
	log          *slog.Logger
	collectAfter time.Duration
	metrics      jobMetrics
}

// Work packages one track: fetch the original to a temporary file, make
// the package, upload init and segments, then media playlists, then the
// master, and only then flip the row to ready. A refresh (api
// repackage) does the same for a ready track, which serves its package
// all along and is never marked otherwise.
func (w *packageWorker) Work(ctx context.Context, job *river.Job[PackageArgs]) error {
	a := job.Args
	start := time.Now()
	var t catalog.Track
	var progress func(int)
	var err error
	if a.Refresh {
		t, err = w.refreshable(ctx, a)
	} else {
		t, err = w.store.StartHLS(ctx, a.TrackID, a.SourceSHA256)
		lastReported := 0
		progress = func(pct int) {
			// Every update notifies the signers; a few are enough.
			if pct >= lastReported+10 {
				lastReported = pct
				_ = w.store.HLSProgress(ctx, a.TrackID, a.SourceSHA256, pct)
			}
		}
	}
	switch {
	case errors.Is(err, errUpToDate):
		return nil
	case errors.Is(err, catalog.ErrNotFound):
		w.metrics.obsolete.Inc()
		return river.JobCancel(errObsolete)
	case err != nil:
		return err
	}
	err = w.publish(ctx, a, t, progress)
	if errors.Is(err, errObsolete) {
		w.metrics.obsolete.Inc()
		return river.JobCancel(err)
	}
	if err != nil {
		return w.fail(ctx, a, err, job)
	}
	w.metrics.ok.Inc()
	w.metrics.duration.UpdateDuration(start)
	return nil
}

// errObsolete ends a job whose track was deleted or given new audio while
// it ran: what it uploaded belongs to nothing, and is removed.
var errObsolete = errors.New("the track was deleted or has new audio")

// publish makes the package of t's original and makes it the track's:
// fetch the original to a temporary file (ffmpeg seeks in its input),
// package it, upload init and segments, then media playlists, then the
// masters, flip the row, and schedule the collection of the package it
// replaces.
func (w *packageWorker) publish(ctx context.Context, a PackageArgs, t catalog.Track, progress func(int)) error {
	backend, ok := w.backends[*t.StorageBackend]
	if !ok {
		return fmt.Errorf("storage backend %q is not configured on this worker", *t.StorageBackend)
	}
	src, err := w.fetch(ctx, backend, *t.ObjectKey)
	if err != nil {
		return err
	}
	defer os.Remove(src)
	pkg, err := w.packager.Package(ctx, src, a.SourceSHA256, progress)
	if err != nil {
		return err
	}
	defer pkg.Remove()

	prefix := PackagePrefix(a.TrackID, pkg.ID)
	if err := w.stopCollections(ctx, prefix); err != nil {
		return err
	}
	for _, f := range pkg.Files {
		if err := putFile(ctx, backend, prefix+"/"+f.Rel, f); err != nil {
			return err
		}
	}
	old, err := w.store.FinishHLS(ctx, a.TrackID, a.SourceSHA256, prefix, pkg.DurationMS, pkg.Lossless)
	if errors.Is(err, catalog.ErrNotFound) {
		deletePrefix(ctx, backend, prefix+"/", w.log)
		return errObsolete
	}
	if err != nil {
		return err
	}
	if old != "" {
		client := river.ClientFromContext[pgx.Tx](ctx)
		if _, err := client.Insert(ctx, CollectArgs{TrackID: a.TrackID, Backend: backend.Name(), Prefix: old},
			&river.InsertOpts{ScheduledAt: time.Now().Add(w.collectAfter)}); err != nil {
			w.log.Error("cannot schedule collection of a replaced package", "prefix", old, "err", err)
		}
	}
	return nil
}

// stopCollections cancels the pending collections of a package this job
// is about to make again (the old audio, or the old settings, back within
// HLS_COLLECT_AFTER): a collection that ran while it uploaded would
// delete the files the track is about to name. Under the package's lock,
// a collection already running ends first, and what it deleted is
// uploaded again. A job that fails after leaves the package to the next
// collection scheduled for it, or to `api orphans`.
func (w *packageWorker) stopCollections(ctx context.Context, prefix string) error {
	client := river.ClientFromContext[pgx.Tx](ctx)
	return w.store.WithPackageLock(ctx, prefix, func(*catalog.Store) error {
		params := river.NewJobListParams().Kinds(CollectArgs{}.Kind()).States(unfinished()...).
			Where("args->>'prefix' = @prefix", river.NamedArgs{"prefix": prefix})
		res, err := client.JobList(ctx, params)
		if err != nil {
			return fmt.Errorf("cannot list the collections of %s: %w", prefix, err)
		}
		for _, j := range res.Jobs {
			if _, err := client.JobCancel(ctx, j.ID); err != nil {
				return fmt.Errorf("cannot cancel the collection of %s: %w", prefix, err)
			}
			w.log.Info("collection of a package cancelled: it is being made again", "prefix", prefix)
		}
		return nil
	})
}

// errUpToDate ends a refresh of a package already made with the
// worker's settings.
var errUpToDate = errors.New("the package is made with these settings")

// refreshable is the track a refresh re-packages: ready, with the audio
// the job was made for (catalog.ErrNotFound otherwise: deleted, or given
// new audio that a job of its own packages), and a package made with
// other settings (errUpToDate otherwise).
func (w *packageWorker) refreshable(ctx context.Context, a PackageArgs) (catalog.Track, error) {
	t, err := w.store.TrackForUpdate(ctx, a.TrackID)
	if err != nil {
		return t, err
	}
	if t.SHA256 == nil || *t.SHA256 != a.SourceSHA256 || t.HLSStatus != catalog.HLSReady {
		return t, catalog.ErrNotFound
	}
	if *t.HLSPrefix == PackagePrefix(a.TrackID, w.packager.ID(a.SourceSHA256)) {
		return t, errUpToDate
	}
	return t, nil
}

// PackagePrefix is where a track's package lives.
func PackagePrefix(track uuid.UUID, packageID string) string {
	return catalog.HLSDir(track) + packageID
}

// fail ends an attempt that did not make a package, and shows on the
// track what happens next. Faults of the input are final. A worker that
// is stopping interrupts its jobs: they are requeued without counting
// as an attempt. Anything else is retried by the queue, with the track
// queued and the error shown, until the last attempt fails it. A
// refresh's track shows nothing: it keeps the package it has.
func (w *packageWorker) fail(ctx context.Context, a PackageArgs, err error, job *river.Job[PackageArgs]) error {
	// The job's context is done: its updates need their own.
	still := context.WithoutCancel(ctx)
	record := func(update func(context.Context, uuid.UUID, string, string) error, reason string) {
		if a.Refresh {
			return
		}
		if err := update(still, a.TrackID, a.SourceSHA256, reason); err != nil && !errors.Is(err, catalog.ErrNotFound) {
			w.log.Error("cannot record the end of a packaging attempt", "track", a.TrackID, "err", err)
		}
	}
	// A job timeout ends the context with DeadlineExceeded; only Stop
	// (StopTimeout) cancels it. river would requeue a job that returns
	// context.Canceled then, but what failed here need not wrap it.
	if errors.Is(ctx.Err(), context.Canceled) {
		w.metrics.interrupted.Inc()
		w.log.Info("packaging interrupted: the worker is stopping", "track", a.TrackID, "refresh", a.Refresh)
		record(w.store.RequeueHLS, "")
		return river.JobSnooze(0)
	}
	w.metrics.failed.Inc()
	reason := err.Error()
	if len(reason) > maxErrorBytes {
		cut := maxErrorBytes
		for cut > 0 && !utf8.RuneStart(reason[cut]) {
			cut-- // a cut character would be invalid UTF-8, which PostgreSQL refuses
		}
		reason = reason[:cut]
	}
	w.log.Warn("packaging failed", "track", a.TrackID, "refresh", a.Refresh, "attempt", job.Attempt, "err", err)
	switch {
	case errors.Is(err, ErrBadInput):
		record(w.store.FailHLS, reason)
		return river.JobCancel(err)
	case job.Attempt < job.MaxAttempts:
		record(w.store.RequeueHLS, reason)
	default:
		record(w.store.FailHLS, reason)
	}
	return err
}

// maxErrorBytes bounds the error a track shows (hls_error).
const maxErrorBytes = 500

// fetch copies an original to a temporary file: ffmpeg seeks in its
// input, which a storage stream cannot do.
func (w *packageWorker) fetch(ctx context.Context, b storage.Backend, key string) (string, error) {
	rc, _, err := b.Open(ctx, key, 0, -1)
	if err != nil {
		return "", fmt.Errorf("cannot read the original: %w", err)
	}
	defer rc.Close()
	f, err := os.CreateTemp("", "playgate-src-*")
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(f, rc); err != nil {
		f.Close()
		os.Remove(f.Name())
		return "", fmt.Errorf("cannot read the original: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

func putFile(ctx context.Context, b storage.Backend, key string, f File) error {
	r, err := os.Open(f.Local)
	if err != nil {
		return err
	}
	defer r.Close()
	if _, err := b.Put(ctx, key, r, f.ContentType); err != nil {
		return fmt.Errorf("cannot store %s: %w", key, err)
	}
	return nil
}

func deletePrefix(ctx context.Context, b storage.Backend, prefix string, log *slog.Logger) {
	var keys []string
	if err := b.List(ctx, prefix, func(o storage.Object) error {
		keys = append(keys, o.Key)
		return nil
	}); err != nil {
		log.Error("cannot list objects to delete", "prefix", prefix, "err", err)
	}
	for _, k := range keys {
		if err := b.Delete(ctx, k); err != nil {
			log.Error("cannot delete object", "key", k, "err", err)
		}
	}
}

type collectWorker struct {
	river.WorkerDefaults[CollectArgs]
	store    *catalog.Store
	backends map[string]storage.Backend
	log      *slog.Logger
}

// Work deletes a replaced package unless the track uses it again (the
// same audio re-uploaded makes the same package id). It holds the
// package's lock throughout: a job making the package again waits, and
// uploads after the delete (packageWorker.stopCollections).
func (w *collectWorker) Work(ctx context.Context, job *river.Job[CollectArgs]) error {
	a := job.Args
	if !strings.HasPrefix(a.Prefix, catalog.HLSDir(a.TrackID)) {
		return river.JobCancel(fmt.Errorf("prefix %q is not under the track", a.Prefix))
	}
	b, ok := w.backends[a.Backend]
	if !ok {
		return fmt.Errorf("storage backend %q is not configured on this worker", a.Backend)
	}
	return w.store.WithPackageLock(ctx, a.Prefix, func(locked *catalog.Store) error {
		t, err := locked.TrackForUpdate(ctx, a.TrackID)
		if err == nil && t.HLSPrefix != nil && *t.HLSPrefix == a.Prefix {
			return nil // in use again
		}
		if err != nil && !errors.Is(err, catalog.ErrNotFound) {
			return err
		}
		deletePrefix(ctx, b, a.Prefix+"/", w.log)
		return nil
	})
}
