package storage

import (
	"context"
	"errors"
	"fmt"
)

// Config names every backend a process may use. The local backend exists
// when Dir is set, the S3 one when S3.Bucket is set; rows remember which
// backend holds their bytes, so both can be open at once while an operator
// moves from one to the other.
type Config struct {
	Dir string
	S3  S3Config
}

// OpenAll opens every configured backend, keyed by Name().
func OpenAll(ctx context.Context, cfg Config) (map[string]Backend, error) {
	out := map[string]Backend{}
	if cfg.Dir != "" {
		l, err := NewLocal(cfg.Dir)
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
