package hls

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/riverqueue/river"

	"github.com/playgate/playgate/api/catalog"
	"github.com/playgate/playgate/origin/storage"
)

// SweepArgs is the periodic job that removes what interrupted uploads
// left in storage. An upload that fails cleans up after itself; one whose
// process died (killed, out of memory, its machine lost) cannot, and
// leaves an object under catalog.UploadsPrefix that was never promoted,
// a temporary file of a local Put, or an incomplete S3 multipart upload.
type SweepArgs struct{}

// Kind implements river.JobArgs.
func (SweepArgs) Kind() string { return "storage_sweep" }

// InsertOpts keeps one sweep pending at a time.
func (SweepArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{
		MaxAttempts: 3,
		UniqueOpts:  river.UniqueOpts{ByState: unfinished()},
	}
}

// sweepInterval is how often the sweep runs: leftovers are rare, and
// each costs only storage until it goes.
const sweepInterval = time.Hour

type sweepWorker struct {
	river.WorkerDefaults[SweepArgs]
	backends map[string]storage.Backend
	after    time.Duration
	log      *slog.Logger
	removed  *metrics.Counter
}

func newSweepWorker(backends map[string]storage.Backend, after time.Duration, log *slog.Logger, set *metrics.Set) *sweepWorker {
	return &sweepWorker{backends: backends, after: after, log: log,
		removed: set.NewCounter("playgate_api_swept_uploads_total")}
}

// Work removes, from every backend, what uploads begun more than
// QueueConfig.SweepAfter ago left: no upload runs that long, so none of
// it is an upload in progress.
func (w *sweepWorker) Work(ctx context.Context, _ *river.Job[SweepArgs]) error {
	cutoff := time.Now().Add(-w.after)
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(w.backends)) {
		n, err := sweep(ctx, w.backends[name], cutoff)
		w.removed.Add(n)
		if n > 0 {
			w.log.Info("removed what interrupted uploads left", "backend", name, "removed", n)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// sweep removes the unpromoted uploads in b older than cutoff, and the
// backend's own leftovers of interrupted writes, and says how many.
func sweep(ctx context.Context, b storage.Backend, cutoff time.Time) (int, error) {
	var stale []string
	err := b.List(ctx, catalog.UploadsPrefix, func(o storage.Object) error {
		if o.ModTime.Before(cutoff) {
			stale = append(stale, o.Key)
		}
		return nil
	})
	removed := 0
	for _, key := range stale {
		if err := b.Delete(ctx, key); err != nil {
			return removed, err
		}
		removed++
	}
	if err != nil {
		return removed, err
	}
	if s, ok := b.(storage.Sweeper); ok {
		n, err := s.SweepInterrupted(ctx, catalog.UploadsPrefix, cutoff)
		return removed + n, err
	}
	return removed, nil
}
