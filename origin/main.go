// Command origin serves playgate's objects to CDN pull zones (SPEC §5):
// originals with byte ranges and HLS playlists and segments with immutable
// caching, from local disk or S3-compatible storage. It never touches the
// database.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/playgate/playgate/internal/envcfg"
	"github.com/playgate/playgate/internal/ops"
	"github.com/playgate/playgate/origin/serve"
	"github.com/playgate/playgate/origin/storage"
	"github.com/playgate/playgate/signer/token"
)

// Config is the origin's environment (deploy/env.example documents it).
type Config struct {
	Addr string `envconfig:"ORIGIN_ADDR" default:":8082"`

	// Auth defaults to token without a CDN and header with one.
	Auth                   string `envconfig:"ORIGIN_AUTH"`
	CDNEnabled             bool   `envconfig:"CDN_ENABLED"`
	OriginPublicURL        string `envconfig:"ORIGIN_PUBLIC_URL" default:"http://localhost:8082"`
	OriginTokenKey         string `envconfig:"ORIGIN_TOKEN_KEY"`
	OriginTokenKeyPrevious string `envconfig:"ORIGIN_TOKEN_KEY_PREVIOUS"`
	OriginSecret           string `envconfig:"ORIGIN_SECRET"`
	OriginSecretHeader     string `envconfig:"ORIGIN_SECRET_HEADER" default:"X-Origin-Secret"`

	CORSOrigins    []string      `envconfig:"CORS_ORIGINS" default:"*"`
	PlaylistMaxAge time.Duration `envconfig:"PLAYLIST_MAX_AGE" default:"60s"`
	WriteTimeout   time.Duration `envconfig:"ORIGIN_WRITE_TIMEOUT" default:"10m"`
	StorageTimeout time.Duration `envconfig:"ORIGIN_STORAGE_TIMEOUT" default:"30s"`
	MaxConns       int           `envconfig:"ORIGIN_MAX_CONNS" default:"10000"`
	OpenFiles      int           `envconfig:"ORIGIN_OPEN_FILES" default:"1000"`
	OpenFilesValid time.Duration `envconfig:"ORIGIN_OPEN_FILES_VALID" default:"1s"`

	storage.Env
	FallbackBackend string `envconfig:"ORIGIN_FALLBACK_BACKEND"`

	LogLevel string `envconfig:"LOG_LEVEL" default:"info"`
}

func (c *Config) auth() serve.Auth {
	switch {
	case c.Auth != "":
		return serve.Auth(c.Auth)
	case c.CDNEnabled:
		return serve.AuthHeader
	}
	return serve.AuthToken
}

// Validate reports every problem at once.
func (c *Config) Validate() error {
	var errs []error
	if err := c.Env.Validate(c.FallbackBackend); err != nil {
		errs = append(errs, err)
	}
	if c.FallbackBackend != "" && c.FallbackBackend == c.TrackStorageBackend {
		errs = append(errs, errors.New("ORIGIN_FALLBACK_BACKEND must differ from TRACK_STORAGE_BACKEND"))
	}
	if c.auth() == serve.AuthToken && len(c.OriginTokenKey) < token.MinKeyLen {
		errs = append(errs, fmt.Errorf("ORIGIN_AUTH=token needs ORIGIN_TOKEN_KEY (at least %d characters)", token.MinKeyLen))
	}
	if c.MaxConns <= 0 {
		errs = append(errs, errors.New("ORIGIN_MAX_CONNS must be positive"))
	}
	if c.OpenFiles < 0 {
		errs = append(errs, errors.New("ORIGIN_OPEN_FILES must be 0 (none) or more"))
	}
	if c.OpenFilesValid < 0 {
		errs = append(errs, errors.New("ORIGIN_OPEN_FILES_VALID must be 0 (check every reuse) or more"))
	}
	return errors.Join(errs...)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "origin:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, stderr io.Writer) error {
	var cfg Config
	if err := envcfg.Load(&cfg); err != nil {
		return err
	}
	log, err := ops.NewLogger(stderr, cfg.LogLevel)
	if err != nil {
		return err
	}
	sc := storage.Config{S3: cfg.Env.S3(), KeepOpen: cfg.OpenFiles, RecheckKept: cfg.OpenFilesValid}
	if cfg.TrackStorageBackend == "local" || cfg.FallbackBackend == "local" {
		sc.Dir = cfg.StorageDir
	}
	if cfg.TrackStorageBackend != "s3" && cfg.FallbackBackend != "s3" {
		sc.S3.Bucket = ""
	}
	all, err := storage.OpenAll(ctx, sc)
	if err != nil {
		return err
	}
	var backends []storage.Backend
	for _, name := range []string{cfg.TrackStorageBackend, cfg.FallbackBackend} {
		if name != "" {
			b, err := storage.Pick(all, name)
			if err != nil {
				return err
			}
			backends = append(backends, b)
		}
	}

	sconf := serve.Config{
		Auth: cfg.auth(), SecretHeader: cfg.OriginSecretHeader, Secret: []byte(cfg.OriginSecret),
		CORSOrigins: trimAll(cfg.CORSOrigins), PlaylistMaxAge: cfg.PlaylistMaxAge,
		WriteTimeout: cfg.WriteTimeout, StorageTimeout: cfg.StorageTimeout, MaxConns: cfg.MaxConns,
	}
	if sconf.Auth == serve.AuthToken {
		v, err := token.NewBunny(token.BunnyHMAC, cfg.OriginPublicURL,
			[]byte(cfg.OriginTokenKey), []byte(cfg.OriginTokenKeyPrevious))
		if err != nil {
			return fmt.Errorf("ORIGIN_TOKEN_KEY: %w", err)
		}
		sconf.Verifier = v
	}
	set := metrics.NewSet()
	srv, err := serve.New(sconf, backends, log, set)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("ORIGIN_ADDR: %w", err)
	}
	var files syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &files); err == nil {
		if need := descriptorsNeeded(cfg.MaxConns, cfg.OpenFiles); files.Cur < need {
			// nginx warns the same way when worker_connections exceed it:
			// the origin works until the load reaches the limit, and then
			// fails accepts and opens.
			log.Warn("the open-file limit is below what ORIGIN_MAX_CONNS and ORIGIN_OPEN_FILES may hold open; raise it (LimitNOFILE=, ulimit -n) or lower them",
				"limit", files.Cur, "needed", need)
		}
	}
	log.Info("origin listening", "addr", ln.Addr().String(), "auth", sconf.Auth, "storage", cfg.TrackStorageBackend)
	return ops.Serve(ctx, srv.HTTPServer(), srv.Listener(ln), 10*time.Second)
}

// descriptorsNeeded is what the origin may hold open at once: one
// descriptor per connection and per kept file, and a margin for the
// listener, the poller, files read while the kept ones are all in use,
// and connections to S3.
func descriptorsNeeded(maxConns, openFiles int) uint64 {
	return uint64(maxConns) + uint64(openFiles) + 128
}

func trimAll(ss []string) []string {
	var out []string
	for _, s := range ss {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
