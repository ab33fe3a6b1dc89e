// Command signer is playgate's hot path (SPEC §4): it answers players with
// 302 redirects to short-lived signed CDN URLs.
//
//	signer [serve]        serve (default)
//	signer sign ...       print a signed URL (operators debugging a 403; tests)
//	signer verify ...     check a signed URL: prints "ok" or the reason
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/playgate/playgate/api/auth"
	"github.com/playgate/playgate/api/hls/m3u8"
	"github.com/playgate/playgate/internal/envcfg"
	"github.com/playgate/playgate/internal/ops"
	"github.com/playgate/playgate/origin/storage"
	"github.com/playgate/playgate/signer/playback"
	"github.com/playgate/playgate/signer/token"
	"github.com/playgate/playgate/signer/trackcache"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, errReported) {
			fmt.Fprintln(os.Stderr, "signer:", err)
		}
		os.Exit(exitCode(err))
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(ctx, stderr)
	case "sign":
		return signCmd(args, stdout)
	case "verify":
		return verifyCmd(args, stdout)
	}
	return fmt.Errorf("unknown command %q: use serve, sign or verify", cmd)
}

func serve(ctx context.Context, stderr io.Writer) error {
	var cfg Config
	if err := envcfg.Load(&cfg); err != nil {
		return err
	}
	log, err := ops.NewLogger(stderr, cfg.LogLevel)
	if err != nil {
		return err
	}
	var verifier *auth.Verifier
	if cfg.AuthJWTSecret != "" || cfg.AuthJWTPublicKey != "" {
		pub, err := envcfg.Secret("AUTH_JWT_PUBLIC_KEY", cfg.AuthJWTPublicKey)
		if err != nil {
			return err
		}
		verifier, err = auth.NewVerifier(auth.Config{Secret: []byte(cfg.AuthJWTSecret), PublicKeyPEM: pub,
			Issuer: cfg.AuthJWTIssuer, Audience: cfg.AuthJWTAudience})
		if err != nil {
			return err
		}
	} else {
		log.Warn("no AUTH_JWT_SECRET or AUTH_JWT_PUBLIC_KEY: private tracks play only through share links")
	}
	trusted, _ := cfg.trustedProxies()

	readURL := cfg.DatabaseReadURL
	if readURL == "" {
		readURL = cfg.DatabaseURL
	}
	read, err := pgxpool.New(ctx, readURL)
	if err != nil {
		return fmt.Errorf("DATABASE_READ_URL: %w", err)
	}
	defer read.Close()

	warnAboutMemory(log, cfg.CacheBytes, debug.SetMemoryLimit(-1), cgroupMemoryLimit("/proc/self/cgroup", "/sys/fs/cgroup"))
	set := metrics.NewSet()
	cache, err := trackcache.New(trackcache.Config{
		MaxBytes: cfg.CacheBytes, NegativeTTL: cfg.NegativeTTL, GrantTTL: cfg.GrantTTL,
	}, read, log, set)
	if err != nil {
		return err
	}
	defer cache.Close()
	listening := make(chan struct{})
	lctx, stopListening := context.WithCancel(ctx)
	defer stopListening()
	go cache.Listen(lctx, cfg.DatabaseURL, listening)
	select {
	case <-listening:
	case <-time.After(5 * time.Second):
		log.Warn("not yet listening for track changes; serving anyway, misses go to the database")
	case <-ctx.Done():
		return nil
	}

	backends, err := storage.OpenAll(ctx, storage.Config{Dir: cfg.StorageDir, S3: cfg.Env.S3()})
	if err != nil {
		return err
	}
	bucket, _ := backends["s3"].(*storage.S3)
	tc, err := cfg.tokenConfig(bucket)
	if err != nil {
		return err
	}
	signer, err := token.New(tc)
	if err != nil {
		return err
	}
	playlists := func(ctx context.Context, backend, key string) ([]byte, error) {
		b, ok := backends[backend]
		if !ok {
			return nil, fmt.Errorf("storage backend %q is not configured", backend)
		}
		rc, _, err := b.Open(ctx, key, 0, -1)
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		return io.ReadAll(io.LimitReader(rc, m3u8.MaxSize))
	}

	provider := cfg.provider()
	srv, err := playback.New(playback.Config{
		Provider: provider, TokenTTL: cfg.CDNTokenTTL, TokenBucket: cfg.CDNTokenBucket,
		BindIP: cfg.CDNTokenBindIP, TrustedProxies: trusted, Capabilities: token.CapabilitiesOf(provider), CORSOrigins: cfg.CORSOrigins,
	}, playback.Deps{Cache: cache, Signer: signer, Verifier: verifier, Playlists: playlists,
		Presign: presign(backends), Log: log, Metrics: set, Ready: cache.Ready(read)})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("SIGNER_ADDR: %w", err)
	}
	log.Info("signer listening", "addr", ln.Addr().String(), "provider", provider, "cdn_enabled", cfg.CDNEnabled)
	return ops.Serve(ctx, srv.HTTPServer(), ln, 10*time.Second)
}

// presign makes direct S3 URLs for the signer's fallback (SPEC §4.5).
func presign(backends map[string]storage.Backend) playback.Presign {
	return func(ctx context.Context, backend, key string, ttl time.Duration, download string) (string, bool, error) {
		b, ok := backends[backend].(*storage.S3)
		if !ok {
			return "", false, nil
		}
		u, err := b.PresignGet(ctx, key, ttl, download)
		return u, err == nil, err
	}
}
