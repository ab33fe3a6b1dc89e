package storage

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Config names every backend a process may use. The local backend exists
// when Dir is set, the S3 one when S3.Bucket is set; rows remember which
// backend holds their bytes, so both can be open at once while an operator
// moves from one to the other.
type Config struct {
	Dir string
	// KeepOpen is how many descriptors the local backend keeps open for
	// later reads (KeepOpen; 0: none), and RecheckKept how long one is
	// reused before its file's status is looked at again
	// (RecheckKeptAfter; 0: on every reuse).
	KeepOpen    int
	RecheckKept time.Duration
	S3          S3Config
}

// Env is the storage part of a binary's environment (SPEC §5.5), embedded
// in the api's and the origin's configuration structs.
type Env struct {
	TrackStorageBackend string `envconfig:"TRACK_STORAGE_BACKEND" default:"local"`
	StorageDir          string `envconfig:"STORAGE_DIR" default:".data/objects"`
	S3Endpoint          string `envconfig:"S3_ENDPOINT"`
	S3Bucket            string `envconfig:"S3_BUCKET"`
	S3Region            string `envconfig:"S3_REGION" default:"us-east-1"`
	S3AccessKeyID       string `envconfig:"S3_ACCESS_KEY_ID"`
	S3SecretAccessKey   string `envconfig:"S3_SECRET_ACCESS_KEY"`
	S3ForcePathStyle    bool   `envconfig:"S3_FORCE_PATH_STYLE"`
	S3MaxIdleConns      int    `envconfig:"S3_MAX_IDLE_CONNS" default:"256"`
}

// S3 is the bucket configuration from the environment.
func (e *Env) S3() S3Config {
	return S3Config{
		Endpoint: e.S3Endpoint, Bucket: e.S3Bucket, Region: e.S3Region,
		AccessKeyID: e.S3AccessKeyID, SecretAccessKey: e.S3SecretAccessKey, ForcePathStyle: e.S3ForcePathStyle,
		MaxIdleConns: e.S3MaxIdleConns,
	}
}

// Validate checks the backend names and the bucket, if one is set;
// fallback is another backend that must exist too ("" for none).
func (e *Env) Validate(fallback string) error {
	var errs []error
	for _, b := range []struct{ name, value string }{{"TRACK_STORAGE_BACKEND", e.TrackStorageBackend}, {"ORIGIN_FALLBACK_BACKEND", fallback}} {
		if b.value != "" && b.value != "local" && b.value != "s3" {
			errs = append(errs, fmt.Errorf("%s must be local or s3, not %q", b.name, b.value))
		}
	}
	if (e.TrackStorageBackend == "s3" || fallback == "s3") && e.S3Bucket == "" {
		errs = append(errs, errors.New("the s3 backend needs S3_BUCKET"))
	}
	if e.S3Bucket != "" {
		if err := e.S3().Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// OpenAll opens every configured backend, keyed by Name().
func OpenAll(ctx context.Context, cfg Config) (map[string]Backend, error) {
	out := map[string]Backend{}
	if cfg.Dir != "" {
		l, err := NewLocal(cfg.Dir, KeepOpen(cfg.KeepOpen), RecheckKeptAfter(cfg.RecheckKept))
		if err != nil {
			return nil, err
		}
		out[l.Name()] = l
	}
	if cfg.S3.Bucket != "" {
		client, err := NewS3Client(ctx, cfg.S3)
		if err != nil {
			return nil, err
		}
		b, err := NewS3(client, cfg.S3.Bucket, cfg.S3.PartSize)
		if err != nil {
			return nil, err
		}
		out[b.Name()] = b
	}
	if len(out) == 0 {
		return nil, errors.New("no storage configured: set STORAGE_DIR or S3_BUCKET")
	}
	return out, nil
}

// Pick returns the named backend from an OpenAll result.
func Pick(backends map[string]Backend, name string) (Backend, error) {
	b, ok := backends[name]
	if !ok {
		return nil, fmt.Errorf("storage backend %q is not configured (local needs STORAGE_DIR, s3 needs S3_BUCKET)", name)
	}
	return b, nil
}

// Lister lists the keys below a prefix of b (for purging a directory's
// objects one by one).
func Lister(b Backend) func(ctx context.Context, prefix string) ([]string, error) {
	return func(ctx context.Context, prefix string) ([]string, error) {
		var keys []string
		err := b.List(ctx, prefix, func(o Object) error {
			keys = append(keys, o.Key)
			return nil
		})
		return keys, err
	}
}
