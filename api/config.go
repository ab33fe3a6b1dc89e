package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/playgate/playgate/api/hls"
	"github.com/playgate/playgate/origin/storage"
)

// Config is the api binary's environment (SPEC §7; deploy/env.example
// documents each variable).
type Config struct {
	Addr            string `envconfig:"API_ADDR" default:":8080"`
	DatabaseURL     string `envconfig:"DATABASE_URL"`
	DatabaseReadURL string `envconfig:"DATABASE_READ_URL"`

	AuthJWTSecret    string `envconfig:"AUTH_JWT_SECRET"`
	AuthJWTPublicKey string `envconfig:"AUTH_JWT_PUBLIC_KEY"` // PEM, inline or a file path
	AuthJWTIssuer    string `envconfig:"AUTH_JWT_ISSUER"`
	AuthJWTAudience  string `envconfig:"AUTH_JWT_AUDIENCE"`

	storage.Env

	UploadMaxBytes    int64         `envconfig:"UPLOAD_MAX_BYTES" default:"1073741824"`
	UploadTimeout     time.Duration `envconfig:"UPLOAD_TIMEOUT" default:"1h"`
	UploadConcurrency int           `envconfig:"UPLOAD_CONCURRENCY" default:"8"`
	UploadSweepAfter  time.Duration `envconfig:"UPLOAD_SWEEP_AFTER" default:"24h"`
	SignerPublicURL   string        `envconfig:"SIGNER_PUBLIC_URL" default:"http://localhost:8081"`
	CDNProvider       string        `envconfig:"CDN_PROVIDER" default:"bunny"`
	CDNEnabled        bool          `envconfig:"CDN_ENABLED"`
	CDNBaseURL        string        `envconfig:"CDN_BASE_URL"`
	// The signer's: how long a URL it signed may work, which is how long
	// after a delete the api purges the track's paths once more.
	CDNTokenTTL    time.Duration `envconfig:"CDN_TOKEN_TTL" default:"1h"`
	CDNTokenBucket time.Duration `envconfig:"CDN_TOKEN_BUCKET" default:"5m"`

	// Purging (SPEC §4.6).
	CDNAPIKey                string `envconfig:"CDN_API_KEY"` // Bunny account API key
	BunnyAPIURL              string `envconfig:"BUNNY_API_URL" default:"https://api.bunny.net"`
	CloudflareZoneID         string `envconfig:"CLOUDFLARE_ZONE_ID"`
	CloudflareAPIToken       string `envconfig:"CLOUDFLARE_API_TOKEN"`
	CloudflareAPIURL         string `envconfig:"CLOUDFLARE_API_URL" default:"https://api.cloudflare.com/client/v4"`
	CloudFrontDistributionID string `envconfig:"CLOUDFRONT_DISTRIBUTION_ID"`
	// The self-hosted edge's loopback purge endpoint (deploy/edge).
	EdgePurgeURL string `envconfig:"EDGE_PURGE_URL"`

	HLSStreaming      bool          `envconfig:"HLS_STREAMING" default:"true"`
	WorkerConcurrency int           `envconfig:"WORKER_CONCURRENCY" default:"1"`
	HLSRenditions     string        `envconfig:"HLS_RENDITIONS" default:"64k,128k,256k"`
	HLSMaxDuration    time.Duration `envconfig:"HLS_MAX_DURATION" default:"2h"`
	HLSJobTimeout     time.Duration `envconfig:"HLS_JOB_TIMEOUT" default:"30m"`
	HLSCollectAfter   time.Duration `envconfig:"HLS_COLLECT_AFTER" default:"24h"`
	FFmpegPath        string        `envconfig:"FFMPEG_PATH"`
	FFprobePath       string        `envconfig:"FFPROBE_PATH"`

	LogLevel string `envconfig:"LOG_LEVEL" default:"info"`
}

// Validate reports every problem at once.
func (c *Config) Validate() error {
	var errs []error
	if c.DatabaseURL == "" {
		errs = append(errs, errors.New("DATABASE_URL is required"))
	}
	if err := c.Env.Validate(""); err != nil {
		errs = append(errs, err)
	}
	if c.UploadMaxBytes <= 0 {
		errs = append(errs, errors.New("UPLOAD_MAX_BYTES must be positive"))
	}
	if c.TrackStorageBackend == "s3" && c.UploadMaxBytes > 5<<30 {
		// Promotion to the content-addressed key is one CopyObject.
		errs = append(errs, errors.New("UPLOAD_MAX_BYTES is at most 5 GiB with S3 storage"))
	}
	if c.UploadSweepAfter < c.UploadTimeout+sweepMargin {
		// The sweep must never take an upload in progress, or one about
		// to be promoted, for a leftover.
		errs = append(errs, fmt.Errorf("UPLOAD_SWEEP_AFTER must be at least UPLOAD_TIMEOUT plus %d minutes", int(sweepMargin.Minutes())))
	}
	if c.UploadConcurrency < 1 {
		errs = append(errs, errors.New("UPLOAD_CONCURRENCY must be at least 1"))
	}
	if c.CDNTokenTTL < 0 || c.CDNTokenBucket < 0 {
		errs = append(errs, errors.New("CDN_TOKEN_TTL and CDN_TOKEN_BUCKET must not be negative"))
	}
	if c.WorkerConcurrency < 0 {
		errs = append(errs, errors.New("WORKER_CONCURRENCY must not be negative"))
	}
	if _, err := hls.ParseRenditions(c.HLSRenditions); err != nil {
		errs = append(errs, err)
	}
	if c.HLSMaxDuration <= 0 || c.HLSJobTimeout <= 0 || c.HLSCollectAfter <= 0 {
		errs = append(errs, errors.New("HLS_MAX_DURATION, HLS_JOB_TIMEOUT and HLS_COLLECT_AFTER must be positive"))
	}
	return errors.Join(errs...)
}

// signedURLLifetime is the longest a URL the signer signed keeps working:
// its expiry is CDN_TOKEN_TTL away, rounded up to CDN_TOKEN_BUCKET, and a
// minute more covers clocks that disagree.
func (c *Config) signedURLLifetime() time.Duration {
	return c.CDNTokenTTL + c.CDNTokenBucket + time.Minute
}

// sweepMargin covers an upload's promotion, which follows its last byte
// (the api allows it a minute), and clocks that disagree.
const sweepMargin = 10 * time.Minute

// packager builds the HLS packager from the configuration.
func (c *Config) packager() (*hls.Packager, error) {
	renditions, err := hls.ParseRenditions(c.HLSRenditions)
	if err != nil {
		return nil, err
	}
	return hls.New(hls.Config{FFmpeg: c.FFmpegPath, FFprobe: c.FFprobePath, Renditions: renditions,
		MaxDuration: c.HLSMaxDuration, Timeout: c.HLSJobTimeout})
}

func (c *Config) storage() storage.Config {
	return storage.Config{Dir: c.StorageDir, S3: c.Env.S3()}
}
