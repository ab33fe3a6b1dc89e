package main

import (
	"errors"
	"fmt"
	"time"

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

	TrackStorageBackend string `envconfig:"TRACK_STORAGE_BACKEND" default:"local"`
	StorageDir          string `envconfig:"STORAGE_DIR" default:".data/objects"`
	S3Endpoint          string `envconfig:"S3_ENDPOINT"`
	S3Bucket            string `envconfig:"S3_BUCKET"`
	S3Region            string `envconfig:"S3_REGION" default:"us-east-1"`
	S3AccessKeyID       string `envconfig:"S3_ACCESS_KEY_ID"`
	S3SecretAccessKey   string `envconfig:"S3_SECRET_ACCESS_KEY"`
	S3ForcePathStyle    bool   `envconfig:"S3_FORCE_PATH_STYLE"`

	UploadMaxBytes  int64         `envconfig:"UPLOAD_MAX_BYTES" default:"1073741824"`
	UploadTimeout   time.Duration `envconfig:"UPLOAD_TIMEOUT" default:"1h"`
	SignerPublicURL string        `envconfig:"SIGNER_PUBLIC_URL" default:"http://localhost:8081"`
	CDNProvider     string        `envconfig:"CDN_PROVIDER" default:"bunny"`
	CDNEnabled      bool          `envconfig:"CDN_ENABLED"`

	LogLevel string `envconfig:"LOG_LEVEL" default:"info"`
}

// Validate reports every problem at once.
func (c *Config) Validate() error {
	var errs []error
	if c.DatabaseURL == "" {
		errs = append(errs, errors.New("DATABASE_URL is required"))
	}
	if c.TrackStorageBackend != "local" && c.TrackStorageBackend != "s3" {
		errs = append(errs, fmt.Errorf("TRACK_STORAGE_BACKEND must be local or s3, not %q", c.TrackStorageBackend))
	}
	if c.TrackStorageBackend == "s3" && c.S3Bucket == "" {
		errs = append(errs, errors.New("TRACK_STORAGE_BACKEND=s3 needs S3_BUCKET"))
	}
	if c.S3Bucket != "" {
		if err := c.storage().S3.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.UploadMaxBytes <= 0 {
		errs = append(errs, errors.New("UPLOAD_MAX_BYTES must be positive"))
	}
	if c.TrackStorageBackend == "s3" && c.UploadMaxBytes > 5<<30 {
		// Promotion to the content-addressed key is one CopyObject.
		errs = append(errs, errors.New("UPLOAD_MAX_BYTES is at most 5 GiB with S3 storage"))
	}
	return errors.Join(errs...)
}

func (c *Config) storage() storage.Config {
	return storage.Config{
		Dir: c.StorageDir,
		S3: storage.S3Config{
			Endpoint: c.S3Endpoint, Bucket: c.S3Bucket, Region: c.S3Region,
			AccessKeyID: c.S3AccessKeyID, SecretAccessKey: c.S3SecretAccessKey,
			ForcePathStyle: c.S3ForcePathStyle,
		},
	}
}
