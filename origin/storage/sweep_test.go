package storage_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/playgate/playgate/internal/s3test"
	"github.com/playgate/playgate/origin/storage"
)

// A Put that died leaves a temporary file no key names; the sweep
// removes it once it is older than the cutoff, and nothing else.
func TestLocalSweepsInterruptedPuts(t *testing.T) {
	root := t.TempDir()
	b, err := storage.NewLocal(root)
	require.NoError(t, err)
	defer b.Close()
	ctx := t.Context()

	_, err = b.Put(ctx, "uploads/a/done", bytes.NewReader([]byte("promoted later")), "")
	require.NoError(t, err)
	_, err = b.Put(ctx, "tracks/a/old.mp3", bytes.NewReader([]byte("audio")), "")
	require.NoError(t, err)
	week := time.Now().Add(-7 * 24 * time.Hour)
	leftover := func(rel string, modTime time.Time) string {
		p := filepath.Join(root, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte("half an upload"), 0o644))
		require.NoError(t, os.Chtimes(p, modTime, modTime))
		return p
	}
	abandoned := leftover("uploads/b/.tmp-0123456789abcdef", week)
	alone := leftover("uploads/c/.tmp-fedcba9876543210", week)
	writing := leftover("uploads/a/.tmp-00000000000000ff", time.Now())
	outside := leftover("tracks/a/.tmp-0000000000000001", week)
	require.NoError(t, os.Chtimes(filepath.Join(root, "uploads/a/done"), week, week))

	removed, err := b.SweepInterrupted(ctx, "uploads/", time.Now().Add(-24*time.Hour))
	require.NoError(t, err)
	assert.Equal(t, 2, removed)
	assert.NoFileExists(t, abandoned)
	assert.NoFileExists(t, alone)
	assert.NoDirExists(t, filepath.Join(root, "uploads/c"), "a directory the sweep empties goes too")
	assert.FileExists(t, writing, "a Put still writing is left alone")
	assert.FileExists(t, outside, "nothing outside the prefix is touched")
	assert.FileExists(t, filepath.Join(root, "uploads/a/done"), "objects are not the sweep's: they are listed")
	assert.FileExists(t, filepath.Join(root, "tracks/a/old.mp3"))

	_, err = b.SweepInterrupted(ctx, "../", time.Now())
	assert.ErrorIs(t, err, storage.ErrInvalidKey)
}

// A multipart upload whose process died keeps its parts in the bucket,
// out of every object listing; the sweep aborts it.
func TestS3SweepsInterruptedMultipartUploads(t *testing.T) {
	srv := s3test.Start(t)
	b := srv.NewBucket(t)
	ctx := t.Context()
	begin := func(key string) string {
		out, err := b.Client().CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(b.Bucket()), Key: &key})
		require.NoError(t, err)
		_, err = b.Client().UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(b.Bucket()), Key: &key,
			UploadId: out.UploadId, PartNumber: aws.Int32(1), Body: strings.NewReader("a part")})
		require.NoError(t, err)
		return key
	}
	pending := func() []string {
		out, err := b.Client().ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(b.Bucket())})
		require.NoError(t, err)
		var keys []string
		for _, u := range out.Uploads {
			keys = append(keys, aws.ToString(u.Key))
		}
		return keys
	}
	begin("uploads/a/0123")
	begin("uploads/b/4567")
	begin("hls/a/pkg/seg.m4s")
	require.Len(t, pending(), 3)

	removed, err := b.SweepInterrupted(ctx, "uploads/", time.Now().Add(-time.Hour))
	require.NoError(t, err)
	assert.Zero(t, removed, "uploads begun within the hour may still be running")
	assert.Len(t, pending(), 3)

	removed, err = b.SweepInterrupted(ctx, "uploads/", time.Now().Add(time.Minute))
	require.NoError(t, err)
	assert.Equal(t, 2, removed)
	assert.Equal(t, []string{"hls/a/pkg/seg.m4s"}, pending(), "nothing outside the prefix is aborted")
}
