// Package storage holds playgate's object-storage backends: a local
// directory and S3-compatible buckets. The origin reads through it; the
// catalog API and the packager write through it.
//
// Keys are slash-separated paths such as "tracks/{id}/{sha256}.mp3".
// Every backend refuses keys that ValidateKey rejects, so no request path
// reaches a filesystem or a bucket without being checked. A Put is atomic:
// readers see the old object or the whole new one, never a part.
package storage

import (
	"context"
	"errors"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

var (
	// ErrNotFound is returned for a key that holds no object.
	ErrNotFound = errors.New("storage: object not found")
	// ErrInvalidKey is returned for a key that ValidateKey rejects.
	ErrInvalidKey = errors.New("storage: invalid key")
	// ErrRangeNotSatisfiable is returned by a remote backend's Open when
	// offset is at or past the end of the object (or it is empty).
	ErrRangeNotSatisfiable = errors.New("storage: range not satisfiable")
)

// MaxKeyLen bounds a key (S3's own limit).
const MaxKeyLen = 1024

// Object describes a stored object.
type Object struct {
	Key     string
	Size    int64
	ModTime time.Time
	// ETag is an opaque strong validator for the bytes, without quotes.
	ETag string
}

// Backend is one place objects live.
type Backend interface {
	// Name is the backend's kind as recorded on track rows: "local" or "s3".
	Name() string
	// Open reads length bytes starting at offset (length < 0: to the end;
	// past the end: to the end). The returned Object always describes the
	// whole object, so a remote object can be found and read in one
	// request, without a Stat first.
	Open(ctx context.Context, key string, offset, length int64) (io.ReadCloser, Object, error)
	// Stat describes an object without reading it.
	Stat(ctx context.Context, key string) (Object, error)
	// Put streams r into key and returns what was stored. On any error,
	// nothing is left at key or anywhere else.
	Put(ctx context.Context, key string, r io.Reader, contentType string) (Object, error)
	// Rename moves an object to a new key, replacing what was there.
	Rename(ctx context.Context, from, to string) error
	// Delete removes an object; a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// List calls fn for every object whose key starts with prefix, in
	// lexical order, stopping at fn's first error.
	List(ctx context.Context, prefix string, fn func(Object) error) error
}

// Sweeper is a Backend that can find what interrupted writes left behind
// where no key names it: a local directory's temporary files, a bucket's
// incomplete multipart uploads. A process that dies mid-Put leaves them;
// nothing else ever would remove them.
type Sweeper interface {
	// SweepInterrupted removes what writes to keys under prefix left
	// behind, when they were last written to (local) or begun (S3)
	// before cutoff, and returns how many it removed.
	SweepInterrupted(ctx context.Context, prefix string, cutoff time.Time) (int, error)
}

// ValidateKey reports whether key is a clean relative object path: no
// empty, "." or ".." segments, no leading or trailing slash, no
// backslashes, control characters or invalid UTF-8, no segment that starts
// with a dot (temporary uploads use those), at most MaxKeyLen bytes.
//
// It reads the key once: the origin checks every request's key.
func ValidateKey(key string) error {
	if key == "" || len(key) > MaxKeyLen {
		return ErrInvalidKey
	}
	segmentStart, ascii := true, true
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c < 0x20 || c == 0x7f || c == '\\':
			return ErrInvalidKey
		case segmentStart && (c == '/' || c == '.'): // an empty or dot segment
			return ErrInvalidKey
		case c >= utf8.RuneSelf:
			ascii = false
		}
		segmentStart = c == '/'
	}
	if segmentStart { // a trailing slash
		return ErrInvalidKey
	}
	if !ascii && !utf8.ValidString(key) {
		return ErrInvalidKey
	}
	return nil
}

// validatePrefix accepts "" or a key-shaped prefix, optionally ending in
// a slash.
func validatePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	return ValidateKey(strings.TrimSuffix(prefix, "/"))
}
