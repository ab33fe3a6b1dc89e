// Package purge removes objects from CDN caches when the catalogue makes
// them unreachable: a track turned private, deleted, or given new audio
// (SPEC §4.6). A write never waits on a CDN: with the job queue, its
// purge is a job inserted in the write's own transaction (TxPurger).
package purge

import (
	"context"
	"log/slog"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5"
)

// Purger asks a CDN to forget object paths. A path ending in "/" stands
// for everything below it. Implementations return quickly: slow provider
// calls happen in the background.
type Purger interface {
	Purge(ctx context.Context, paths []string)
}

// TxPurger is a Purger that can also queue a purge inside the
// transaction of the write that causes it (catalog.Purge), so that the
// two commit together.
type TxPurger interface {
	Purger
	PurgeTx(ctx context.Context, tx pgx.Tx, paths []string) error
	// PurgeTxAt is PurgeTx for one purge per time in times, each run
	// then and not before (the zero time: at once).
	PurgeTxAt(ctx context.Context, tx pgx.Tx, paths []string, times ...time.Time) error
}

// Skip is the purger for providers without a purge API (and for installs
// with no CDN): it logs and counts what it could not purge, so an
// operator can see that cached copies live until their TTL.
type Skip struct {
	log     *slog.Logger
	skipped *metrics.Counter
}

// NewSkip builds a Skip purger for provider.
func NewSkip(log *slog.Logger, set *metrics.Set, provider string) *Skip {
	return &Skip{
		log:     log,
		skipped: set.GetOrCreateCounter(`playgate_api_purges_total{provider="` + provider + `",outcome="skipped"}`),
	}
}

// Purge implements Purger.
func (s *Skip) Purge(_ context.Context, paths []string) {
	s.skipped.Add(len(paths))
	s.log.Info("cdn purge skipped: the provider has no purge API; cached copies expire with their TTL", "paths", paths)
}
