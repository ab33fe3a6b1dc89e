package storage_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/playgate/playgate/internal/s3test"
	"github.com/playgate/playgate/origin/storage"
	"github.com/playgate/playgate/origin/storage/storagetest"
)

func TestLocal(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend {
		b, err := storage.NewLocal(t.TempDir())
		require.NoError(t, err)
		t.Cleanup(func() { b.Close() })
		return b
	})
}

func TestS3(t *testing.T) {
	srv := s3test.Start(t)
	storagetest.Run(t, func(t *testing.T) storage.Backend { return srv.NewBucket(t) })
}

// A symlink planted inside the root cannot lead a key outside it.
func TestLocalConfinesSymlinks(t *testing.T) {
	outside := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o600))
	root := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(root, "tracks"), 0o755))
	require.NoError(t, os.Symlink(outside, filepath.Join(root, "tracks", "escape")))
	b, err := storage.NewLocal(root)
	require.NoError(t, err)
	defer b.Close()

	_, err = b.Stat(t.Context(), "tracks/escape/secret")
	assert.Error(t, err)
	_, _, err = b.Open(t.Context(), "tracks/escape/secret", 0, -1)
	assert.Error(t, err)
}

// validKeyByRule is ValidateKey's rule written plainly, one condition at
// a time: ValidateKey checks it in a single pass.
func validKeyByRule(key string) bool {
	if key == "" || len(key) > storage.MaxKeyLen || !utf8.ValidString(key) {
		return false
	}
	if strings.ContainsFunc(key, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '\\' }) {
		return false
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg[0] == '.' {
			return false
		}
	}
	return true
}

func TestValidateKey(t *testing.T) {
	for key, valid := range map[string]bool{
		"tracks/a/b.mp3": true, "hls/a/p/128k/x.m4s": true, "a": true, "tracks/a/ü.mp3": true,
		"a.b/c..d/e.": true, strings.Repeat("a", storage.MaxKeyLen): true,
		"": false, "/a": false, "a/": false, "a//b": false, ".a": false, "a/.b": false, "a/..": false,
		"a/./b": false, "a\\b": false, "a\x00b": false, "a\x1fb": false, "a\x7fb": false, "a/\xffb": false,
		strings.Repeat("a", storage.MaxKeyLen+1): false,
	} {
		assert.Equal(t, valid, storage.ValidateKey(key) == nil, "%q", key)
		assert.Equal(t, valid, validKeyByRule(key), "%q by the rule", key)
	}
}

func FuzzValidateKey(f *testing.F) {
	for _, s := range []string{"tracks/a/b.mp3", "../x", "a//b", "a/./b", "a\x00", "hls/x/.tmp", "a/b/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		err := storage.ValidateKey(key)
		assert.Equal(t, validKeyByRule(key), err == nil, "%q: %v", key, err)
		if err != nil {
			return
		}
		// Whatever passes is a clean relative path that stays below a root.
		assert.Equal(t, key, filepath.ToSlash(filepath.Clean(key)), "accepted key is clean")
		assert.False(t, filepath.IsAbs(key))
		assert.True(t, filepath.IsLocal(key), "accepted key %q is local", key)
	})
}

// A failed multipart upload is aborted: no parts stay billed in the bucket.
func TestS3FailedMultipartIsAborted(t *testing.T) {
	b := s3test.Start(t).NewBucket(t)
	src := io.MultiReader(bytes.NewReader(make([]byte, 11<<20)), iotest.ErrReader(errors.New("client went away")))
	_, err := b.Put(t.Context(), "tracks/abort/x.wav", src, "")
	require.Error(t, err)
	bucket := b.Bucket()
	out, err := b.Client().ListMultipartUploads(t.Context(), &s3.ListMultipartUploadsInput{Bucket: &bucket})
	require.NoError(t, err)
	assert.Empty(t, out.Uploads, "no multipart upload may stay open")
}

// S3 refuses a range that starts at or past the end; the origin then
// describes the object, for the 416's size.
func TestS3OpenPastTheEnd(t *testing.T) {
	b := s3test.Start(t).NewBucket(t)
	_, err := b.Put(t.Context(), "tracks/a/b.mp3", bytes.NewReader([]byte("0123456789")), "")
	require.NoError(t, err)
	_, _, err = b.Open(t.Context(), "tracks/a/b.mp3", 10, -1)
	assert.ErrorIs(t, err, storage.ErrRangeNotSatisfiable)
	rc, obj, err := b.Open(t.Context(), "tracks/a/b.mp3", 8, 100)
	require.NoError(t, err, "a range that ends past the end is clipped")
	defer rc.Close()
	got, _ := io.ReadAll(rc)
	assert.Equal(t, "89", string(got))
	assert.EqualValues(t, 10, obj.Size, "the whole object is described")
}
