// Command api is playgate's catalog API: metadata writes, uploads, share
// links and licences (SPEC §3).
//
//	api [serve]                 serve the API (default)
//	api migrate                 apply database migrations and exit
//	api worker                  run only HLS packaging workers
//	api token --sub ID [--ttl D] [--role R]
//	                            print a development JWT (HS256, AUTH_JWT_SECRET)
//	api orphans [--delete] [--min-age D]
//	                            list (and remove) objects no track names
//	api repackage [--dry-run]   package tracks stored while HLS was off, and
//	                            re-package those made with other HLS settings
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/cloudfront"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"github.com/playgate/playgate/api/auth"
	"github.com/playgate/playgate/api/catalog"
	"github.com/playgate/playgate/api/hls"
	"github.com/playgate/playgate/api/httpapi"
	"github.com/playgate/playgate/api/orphans"
	"github.com/playgate/playgate/api/purge"
	"github.com/playgate/playgate/api/schema"
	"github.com/playgate/playgate/internal/envcfg"
	"github.com/playgate/playgate/internal/ops"
	"github.com/playgate/playgate/origin/storage"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "api:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(ctx, stderr, true)
	case "worker":
		return serve(ctx, stderr, false)
	case "migrate":
		return migrate(ctx, stdout)
	case "token":
		return token(args, stdout)
	case "orphans":
		return listOrphans(ctx, args, stdout, stderr)
	case "repackage":
		return repackage(ctx, args, stdout, stderr)
	default:
		return fmt.Errorf("unknown command %q: use serve, worker, migrate, token, orphans or repackage", cmd)
	}
}

func loadConfig(stderr io.Writer) (*Config, *slog.Logger, error) {
	var cfg Config
	if err := envcfg.Load(&cfg); err != nil {
		return nil, nil, err
	}
	log, err := ops.NewLogger(stderr, cfg.LogLevel)
	if err != nil {
		return nil, nil, err
	}
	return &cfg, log, nil
}

// serve runs the API with in-process packaging workers
// (WORKER_CONCURRENCY of them), or, with http false, the workers alone:
// `api worker` scales packaging on as many machines as needed.
func serve(ctx context.Context, stderr io.Writer, http bool) error {
	cfg, log, err := loadConfig(stderr)
	if err != nil {
		return err
	}
	secret := []byte(cfg.AuthJWTSecret)
	pub, err := envcfg.Secret("AUTH_JWT_PUBLIC_KEY", cfg.AuthJWTPublicKey)
	if err != nil {
		return err
	}
	verifier, err := auth.NewVerifier(auth.Config{Secret: secret, PublicKeyPEM: pub, Issuer: cfg.AuthJWTIssuer, Audience: cfg.AuthJWTAudience})
	if err != nil {
		return err
	}

	primary, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("DATABASE_URL: %w", err)
	}
	defer primary.Close()
	var read *pgxpool.Pool
	if cfg.DatabaseReadURL != "" {
		if read, err = pgxpool.New(ctx, cfg.DatabaseReadURL); err != nil {
			return fmt.Errorf("DATABASE_READ_URL: %w", err)
		}
		defer read.Close()
	}

	backends, err := storage.OpenAll(ctx, cfg.storage())
	if err != nil {
		return err
	}
	set := metrics.NewSet()
	store := catalog.NewStore(primary, read)

	workers := cfg.WorkerConcurrency
	if !http && workers == 0 {
		return errors.New("api worker: WORKER_CONCURRENCY must be at least 1")
	}
	provider, purgeAPI, err := purgeClient(ctx, cfg, backends, log)
	if err != nil {
		return err
	}
	var queue *hls.Queue
	if cfg.HLSStreaming || !http {
		var packager *hls.Packager
		var extra func(*river.Workers) map[string]river.QueueConfig
		if workers > 0 {
			if packager, err = cfg.packager(); err != nil {
				return err
			}
			if purgeAPI != nil {
				w := purge.NewWorker(purge.WorkerConfig{}, provider, purgeAPI, log, set)
				extra = func(ws *river.Workers) map[string]river.QueueConfig { return w.Register(ws, purgeConcurrency) }
			}
		}
		queue, err = hls.NewQueue(hls.QueueConfig{Workers: workers, CollectAfter: cfg.HLSCollectAfter,
			SweepAfter: cfg.UploadSweepAfter, Extra: extra}, primary, store, backends, packager, log, set)
		if err != nil {
			return err
		}
		if workers > 0 {
			if err := queue.Start(ctx); err != nil {
				return fmt.Errorf("cannot start packaging workers: %w", err)
			}
			defer func() {
				sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				_ = queue.Stop(sctx)
			}()
			log.Info("packaging workers started", "workers", workers)
		}
	}
	if !http {
		<-ctx.Done()
		return nil
	}
	var enqueue catalog.Enqueue
	if cfg.HLSStreaming {
		enqueue = queue.Enqueue
	}
	var purger purge.Purger
	switch {
	case purgeAPI == nil:
		purger = purge.NewSkip(log, set, provider)
	case queue != nil:
		// Run by the packaging workers, wherever they are: they read the
		// same configuration.
		expand, _ := purgeAPI.(purge.Expander)
		purger = purge.NewJobs(queue, expand, provider, log, set)
	default:
		// HLS_STREAMING=false: no job queue, so purges wait in memory.
		q := purge.NewQueue(purge.QueueConfig{}, provider, purgeAPI, log, set)
		go q.Run(ctx)
		purger = q
	}
	srv, err := httpapi.New(httpapi.Config{
		UploadMaxBytes:    cfg.UploadMaxBytes,
		UploadTimeout:     cfg.UploadTimeout,
		UploadConcurrency: cfg.UploadConcurrency,
		SignerURL:         cfg.SignerPublicURL,
		WriteBackend:      cfg.TrackStorageBackend,
		PurgeAgainAfter:   cfg.signedURLLifetime(),
	}, httpapi.Deps{
		Store:    store,
		Backends: backends,
		Enqueue:  enqueue,
		Verifier: verifier,
		Purger:   purger,
		Log:      log,
		Metrics:  set,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("API_ADDR: %w", err)
	}
	log.Info("api listening", "addr", ln.Addr().String(), "storage", cfg.TrackStorageBackend)
	return ops.Serve(ctx, srv.HTTPServer(), ops.LingeringListener(ln, lingerTimeout), 15*time.Second)
}

// lingerTimeout bounds how long a closed connection keeps reading what a
// client still sends, an upload refused halfway above all (nginx's
// lingering_timeout is 5 s too).
const lingerTimeout = 5 * time.Second

func migrate(ctx context.Context, stdout io.Writer) error {
	url := os.Getenv("DATABASE_URL")
	if url == "" {
		return errors.New("DATABASE_URL is required")
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("cannot connect to DATABASE_URL: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	applied, err := schema.Migrate(ctx, conn)
	if err != nil {
		return err
	}
	for _, name := range applied {
		fmt.Fprintln(stdout, "applied", name)
	}
	if len(applied) == 0 {
		fmt.Fprintln(stdout, "database is up to date")
	}
	return nil
}

// commandFlags is a subcommand's flag set, with its usage lines printed
// before the flags.
func commandFlags(stderr io.Writer, name string, usage ...string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		for _, line := range usage {
			fmt.Fprintln(stderr, line)
		}
		fs.PrintDefaults()
	}
	return fs
}

// openCatalog opens what an operator's command needs of the catalogue:
// the primary's pool (the caller closes it), the store on it, and the job
// queue, insert-only.
func openCatalog(ctx context.Context, cfg *Config, backends map[string]storage.Backend, log *slog.Logger) (*pgxpool.Pool, *catalog.Store, *hls.Queue, error) {
	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	store := catalog.NewStore(pool, nil)
	queue, err := hls.NewQueue(hls.QueueConfig{}, pool, store, backends, nil, log, metrics.NewSet())
	if err != nil {
		pool.Close()
		return nil, nil, nil, err
	}
	return pool, store, queue, nil
}

// repackage brings every track with audio to a package made with this
// configuration's settings (HLS_RENDITIONS, a new format version): it
// queues the re-packaging of every ready track whose package was made
// with others, and the packaging of every track stored while HLS was off,
// one track id and its current package ("-" for none) per line. The
// packaging workers make the packages with their own settings, so they
// must run the new configuration first. A ready track keeps its package
// until the new one replaces it; the old one is collected after
// HLS_COLLECT_AFTER. Running it again queues nothing twice.
func repackage(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := commandFlags(stderr, "repackage", "usage: api repackage [--dry-run]",
		"Packages the tracks stored while HLS was off, and re-packages ready tracks made with other",
		"HLS settings than these (after HLS_RENDITIONS changed). Run it once the packaging workers",
		"run the new settings.")
	dryRun := fs.Bool("dry-run", false, "list the tracks, and queue nothing")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, log, err := loadConfig(stderr)
	if err != nil {
		return err
	}
	packager, err := cfg.packager()
	if err != nil {
		return err
	}
	pool, store, queue, err := openCatalog(ctx, cfg, nil, log)
	if err != nil {
		return err
	}
	defer pool.Close()
	queued := 0
	for after := uuid.Nil; ; {
		page, err := store.Packagings(ctx, after, 500)
		if err != nil {
			return err
		}
		for _, p := range page {
			current := p.Prefix
			if p.Status == catalog.HLSNone {
				current = "-"
			} else if p.Prefix == hls.PackagePrefix(p.TrackID, packager.ID(p.SHA256)) {
				continue
			}
			if !*dryRun {
				var err error
				if p.Status == catalog.HLSNone {
					err = store.QueueHLS(ctx, p.TrackID, p.SHA256, queue.Enqueue)
				} else {
					err = queue.Refresh(ctx, p.TrackID, p.SHA256)
				}
				if errors.Is(err, catalog.ErrNotFound) {
					continue // changed since it was listed: its own job packages it
				}
				if err != nil {
					return fmt.Errorf("queued %d: %w", queued, err)
				}
			}
			queued++
			if _, err := fmt.Fprintf(stdout, "%s\t%s\n", p.TrackID, current); err != nil {
				return err
			}
		}
		if len(page) < 500 {
			break
		}
		after = page[len(page)-1].TrackID
	}
	if *dryRun {
		fmt.Fprintf(stderr, "%d tracks to package (dry run: none queued)\n", queued)
	} else {
		fmt.Fprintf(stderr, "%d tracks queued for packaging\n", queued)
	}
	return nil
}

// minOrphanAge keeps `api orphans` away from what is being written: an
// upload promoted a moment before its track names it, a package whose
// files are stored before it is made the track's.
const minOrphanAge = 24 * time.Hour

// listOrphans prints the objects in every configured backend that no live
// track names, one per line (backend, key, size, modification time), and
// with --delete removes them.
func listOrphans(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := commandFlags(stderr, "orphans", "usage: api orphans [--delete] [--min-age D]",
		"Objects under tracks/ and hls/ that no live track names. During a migration between",
		"backends, objects copied ahead of their tracks' rows are listed too: run it after.")
	remove := fs.Bool("delete", false, "remove the orphans found")
	minAge := fs.Duration("min-age", 2*minOrphanAge, "judge only objects last modified longer ago than this (at least 24h)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *minAge < minOrphanAge {
		return fmt.Errorf("--min-age must be at least %dh", int(minOrphanAge.Hours()))
	}
	cfg, log, err := loadConfig(stderr) // validated: DATABASE_URL is set
	if err != nil {
		return err
	}
	backends, err := storage.OpenAll(ctx, cfg.storage())
	if err != nil {
		return err
	}
	pool, store, queue, err := openCatalog(ctx, cfg, backends, log)
	if err != nil {
		return err
	}
	defer pool.Close()
	pending, err := queue.PendingCollections(ctx)
	if err != nil {
		return err
	}
	finder := orphans.Finder{Store: store, Pending: pending, Cutoff: time.Now().Add(-*minAge)}
	var found []orphans.Orphan
	var size int64
	for _, name := range slices.Sorted(maps.Keys(backends)) {
		err := finder.Find(ctx, name, backends[name], func(o orphans.Orphan) error {
			found = append(found, o)
			size += o.Size
			_, err := fmt.Fprintf(stdout, "%s\t%s\t%d\t%s\n", o.Backend, o.Key, o.Size, o.ModTime.UTC().Format(time.RFC3339))
			return err
		})
		if err != nil {
			return err
		}
	}
	fmt.Fprintf(stderr, "%d orphans, %d bytes\n", len(found), size)
	if !*remove {
		return nil
	}
	for i, o := range found {
		if err := backends[o.Backend].Delete(ctx, o.Key); err != nil {
			return fmt.Errorf("deleted %d of %d: %w", i, len(found), err)
		}
	}
	fmt.Fprintf(stderr, "deleted %d\n", len(found))
	return nil
}

func token(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("api token", flag.ContinueOnError)
	sub := fs.String("sub", "", "subject (user id) of the token")
	ttl := fs.Duration("ttl", time.Hour, "lifetime of the token")
	role := fs.String("role", "", `role claim, e.g. "marketplace" for licence grants`)
	if err := fs.Parse(args); err != nil {
		return err
	}
	secret := os.Getenv("AUTH_JWT_SECRET")
	if secret == "" {
		return errors.New("AUTH_JWT_SECRET is required to mint a token")
	}
	tok, err := auth.Mint([]byte(secret), auth.MintOptions{
		Subject: *sub, TTL: *ttl, Role: *role,
		Issuer: os.Getenv("AUTH_JWT_ISSUER"), Audience: os.Getenv("AUTH_JWT_AUDIENCE"),
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

// purgeConcurrency is how many purges a worker process runs at once.
const purgeConcurrency = 4

// purgeClient picks the CDN's purge API (SPEC §4.6): nil when there is
// none, for want of a CDN or of its credentials.
func purgeClient(ctx context.Context, cfg *Config, backends map[string]storage.Backend, log *slog.Logger) (string, purge.Client, error) {
	if !cfg.CDNEnabled {
		return "none", nil, nil
	}
	provider := cfg.CDNProvider
	if cfg.EdgePurgeURL != "" {
		// playgate's own edge: directories are listed from storage.
		return "selfhosted", &purge.SelfHosted{URL: cfg.EdgePurgeURL, List: storage.Lister(backends[cfg.TrackStorageBackend])}, nil
	}
	var client purge.Client
	switch provider {
	case "bunny", "bunny-sha256", "bunny-md5":
		if cfg.CDNAPIKey != "" {
			client = &purge.Bunny{API: cfg.BunnyAPIURL, ZoneURL: cfg.CDNBaseURL, Key: cfg.CDNAPIKey}
		}
	case "cloudflare":
		if cfg.CloudflareZoneID != "" && cfg.CloudflareAPIToken != "" {
			client = &purge.Cloudflare{API: cfg.CloudflareAPIURL, Zone: cfg.CloudflareZoneID,
				Token: cfg.CloudflareAPIToken, SiteURL: cfg.CDNBaseURL}
		}
	case "cloudfront":
		if cfg.CloudFrontDistributionID != "" {
			awsCfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion("us-east-1"))
			if err != nil {
				return "", nil, fmt.Errorf("cannot load AWS configuration for CloudFront: %w", err)
			}
			client = &purge.CloudFront{Client: cloudfront.NewFromConfig(awsCfg), Distribution: cfg.CloudFrontDistributionID}
		}
	}
	if client == nil {
		log.Warn("no purge API configured for the CDN: cached copies of deleted or private tracks live until their TTL",
			"provider", provider)
	}
	return provider, client, nil
}
