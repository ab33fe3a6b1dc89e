// Package storagetest is the conformance suite every storage.Backend
// passes: the local directory and a real S3 server run the same cases.
package storagetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/playgate/playgate/origin/storage"
)

// Run runs every case against a fresh backend from newBackend.
func Run(t *testing.T, newBackend func(t *testing.T) storage.Backend) {
	cases := []struct {
		name string
		fn   func(t *testing.T, b storage.Backend)
	}{
		{"PutStatOpen", testPutStatOpen},
		{"Ranges", testRanges},
		{"EmptyObject", testEmptyObject},
		{"Overwrite", testOverwrite},
		{"NotFound", testNotFound},
		{"InvalidKeys", testInvalidKeys},
		{"Delete", testDelete},
		{"List", testList},
		{"Rename", testRename},
		{"LargeStreamingPut", testLargePut},
		{"FailedPutLeavesNothing", testFailedPut},
		{"CancelledPutLeavesNothing", testCancelledPut},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.fn(t, newBackend(t))
		})
	}
}

var ctx = context.Background()

func put(t *testing.T, b storage.Backend, key string, data []byte) storage.Object {
	t.Helper()
	obj, err := b.Put(ctx, key, bytes.NewReader(data), "application/octet-stream")
	require.NoError(t, err, "put %s", key)
	return obj
}

func read(t *testing.T, b storage.Backend, key string, off, n int64) ([]byte, storage.Object) {
	t.Helper()
	rc, obj, err := b.Open(ctx, key, off, n)
	require.NoError(t, err, "open %s", key)
	defer rc.Close()
	data, err := io.ReadAll(rc)
	require.NoError(t, err)
	return data, obj
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func testPutStatOpen(t *testing.T, b storage.Backend) {
	data := randomBytes(1000)
	before := time.Now().Add(-time.Minute)
	obj := put(t, b, "tracks/a/b.mp3", data)
	assert.Equal(t, "tracks/a/b.mp3", obj.Key)
	assert.EqualValues(t, 1000, obj.Size)
	assert.NotEmpty(t, obj.ETag)
	assert.True(t, obj.ModTime.After(before), "mod time %v is recent", obj.ModTime)

	st, err := b.Stat(ctx, "tracks/a/b.mp3")
	require.NoError(t, err)
	assert.Equal(t, obj.Size, st.Size)
	assert.Equal(t, obj.ETag, st.ETag, "the ETag is stable between calls")

	got, o := read(t, b, "tracks/a/b.mp3", 0, -1)
	assert.Equal(t, data, got)
	assert.EqualValues(t, 1000, o.Size)
	assert.Equal(t, st.ETag, o.ETag)
}

func testRanges(t *testing.T, b storage.Backend) {
	data := randomBytes(10_000)
	put(t, b, "hls/x/y/seg.m4s", data)
	for _, c := range []struct {
		name      string
		off, n    int64
		from, end int
	}{
		{"head", 0, 100, 0, 100},
		{"middle", 5000, 1234, 5000, 6234},
		{"open end", 9000, -1, 9000, 10_000},
		{"last byte", 9999, 1, 9999, 10_000},
		{"whole by length", 0, 10_000, 0, 10_000},
		{"empty", 10, 0, 10, 10},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, obj := read(t, b, "hls/x/y/seg.m4s", c.off, c.n)
			assert.Equal(t, data[c.from:c.end], got)
			assert.EqualValues(t, 10_000, obj.Size, "Open reports the whole object's size")
		})
	}
}

func testEmptyObject(t *testing.T, b storage.Backend) {
	obj := put(t, b, "tracks/e/empty.wav", nil)
	assert.EqualValues(t, 0, obj.Size)
	got, _ := read(t, b, "tracks/e/empty.wav", 0, -1)
	assert.Empty(t, got)
}

func testOverwrite(t *testing.T, b storage.Backend) {
	first := put(t, b, "tracks/o/x.flac", []byte("first version"))
	second := put(t, b, "tracks/o/x.flac", []byte("the second, longer version"))
	assert.NotEqual(t, first.ETag, second.ETag, "new bytes get a new ETag")
	got, _ := read(t, b, "tracks/o/x.flac", 0, -1)
	assert.Equal(t, "the second, longer version", string(got))
}

func testNotFound(t *testing.T, b storage.Backend) {
	_, err := b.Stat(ctx, "tracks/none/x.mp3")
	assert.ErrorIs(t, err, storage.ErrNotFound)
	_, _, err = b.Open(ctx, "tracks/none/x.mp3", 0, -1)
	assert.ErrorIs(t, err, storage.ErrNotFound)

	// A "directory" is not an object, and neither is a key below a file.
	put(t, b, "tracks/d/file.mp3", []byte("x"))
	_, err = b.Stat(ctx, "tracks/d")
	assert.ErrorIs(t, err, storage.ErrNotFound)
	_, _, err = b.Open(ctx, "tracks/d", 0, -1)
	assert.ErrorIs(t, err, storage.ErrNotFound)
	_, err = b.Stat(ctx, "tracks/d/file.mp3/below")
	assert.ErrorIs(t, err, storage.ErrNotFound)
}

func testInvalidKeys(t *testing.T, b storage.Backend) {
	for _, key := range []string{
		"", "/tracks/a", "tracks/a/", "tracks//a", "tracks/../etc/passwd", "../x",
		"tracks/./a", "tracks/.hidden", `tracks\a`, "tracks/a\x00b", "tracks/\xff",
		string(bytes.Repeat([]byte("a"), storage.MaxKeyLen+1)),
	} {
		_, err := b.Put(ctx, key, bytes.NewReader([]byte("x")), "")
		assert.ErrorIs(t, err, storage.ErrInvalidKey, "put %q", key)
		_, err = b.Stat(ctx, key)
		assert.ErrorIs(t, err, storage.ErrInvalidKey, "stat %q", key)
		_, _, err = b.Open(ctx, key, 0, -1)
		assert.ErrorIs(t, err, storage.ErrInvalidKey, "open %q", key)
		assert.ErrorIs(t, b.Delete(ctx, key), storage.ErrInvalidKey, "delete %q", key)
	}
}

func testDelete(t *testing.T, b storage.Backend) {
	put(t, b, "tracks/del/a.mp3", []byte("x"))
	require.NoError(t, b.Delete(ctx, "tracks/del/a.mp3"))
	_, err := b.Stat(ctx, "tracks/del/a.mp3")
	assert.ErrorIs(t, err, storage.ErrNotFound)
	assert.NoError(t, b.Delete(ctx, "tracks/del/a.mp3"), "deleting a missing key is not an error")
	// The emptied directory can be written again at once.
	put(t, b, "tracks/del/b.mp3", []byte("y"))
}

func testList(t *testing.T, b storage.Backend) {
	keys := []string{
		"hls/ab/p1/master.m3u8", "hls/ab/p1/128k/index.m3u8", "hls/abc/p2/master.m3u8",
		"tracks/ab/x.mp3",
	}
	for _, k := range keys {
		put(t, b, k, []byte(k))
	}
	list := func(prefix string) []string {
		var got []string
		require.NoError(t, b.List(ctx, prefix, func(o storage.Object) error {
			assert.EqualValues(t, len(o.Key), o.Size, "size of %s", o.Key)
			got = append(got, o.Key)
			return nil
		}))
		return got
	}
	assert.Equal(t, []string{"hls/ab/p1/128k/index.m3u8", "hls/ab/p1/master.m3u8"}, list("hls/ab/"))
	assert.Equal(t, []string{"hls/ab/p1/128k/index.m3u8", "hls/ab/p1/master.m3u8", "hls/abc/p2/master.m3u8"}, list("hls/ab"))
	assert.Equal(t, []string{"hls/abc/p2/master.m3u8"}, list("hls/abc/p2/master.m3u8"))
	assert.Empty(t, list("hls/zz/"))
	assert.Len(t, list(""), len(keys))

	stop := errors.New("stop")
	n := 0
	err := b.List(ctx, "hls/", func(storage.Object) error { n++; return stop })
	assert.ErrorIs(t, err, stop)
	assert.Equal(t, 1, n, "List stops at the callback's first error")
}

func testRename(t *testing.T, b storage.Backend) {
	put(t, b, "uploads/r/tmp", []byte("promoted"))
	put(t, b, "tracks/r/final.mp3", []byte("old"))
	require.NoError(t, b.Rename(ctx, "uploads/r/tmp", "tracks/r/final.mp3"))
	got, _ := read(t, b, "tracks/r/final.mp3", 0, -1)
	assert.Equal(t, "promoted", string(got))
	_, err := b.Stat(ctx, "uploads/r/tmp")
	assert.ErrorIs(t, err, storage.ErrNotFound)
	assert.ErrorIs(t, b.Rename(ctx, "uploads/r/none", "tracks/r/other"), storage.ErrNotFound)
}

// More than one multipart part (S3 parts are at least 5 MiB), streamed
// from a reader that does not know its length.
func testLargePut(t *testing.T, b storage.Backend) {
	data := randomBytes(12<<20 + 123)
	obj, err := b.Put(ctx, "tracks/big/x.wav", io.MultiReader(bytes.NewReader(data)), "audio/wav")
	require.NoError(t, err)
	assert.EqualValues(t, len(data), obj.Size)
	got, _ := read(t, b, "tracks/big/x.wav", 0, -1)
	assert.True(t, bytes.Equal(data, got), "large object round-trips")
	part, _ := read(t, b, "tracks/big/x.wav", 6<<20, 1<<20)
	assert.True(t, bytes.Equal(data[6<<20:7<<20], part), "a range across a part boundary")
}

var errBroken = errors.New("client went away")

type failingReader struct {
	r     io.Reader
	after int
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.after <= 0 {
		return 0, errBroken
	}
	if len(p) > f.after {
		p = p[:f.after]
	}
	n, err := f.r.Read(p)
	f.after -= n
	return n, err
}

func assertNothingUnder(t *testing.T, b storage.Backend, prefix string) {
	t.Helper()
	var keys []string
	require.NoError(t, b.List(ctx, prefix, func(o storage.Object) error {
		keys = append(keys, o.Key)
		return nil
	}))
	assert.Empty(t, keys, "nothing may be left under %s", prefix)
}

func testFailedPut(t *testing.T, b storage.Backend) {
	for _, size := range []int{1000, 11 << 20} { // single PUT and multipart
		src := &failingReader{r: bytes.NewReader(randomBytes(size + 1)), after: size}
		_, err := b.Put(ctx, "tracks/fail/x.mp3", src, "")
		require.Error(t, err)
		_, err = b.Stat(ctx, "tracks/fail/x.mp3")
		assert.ErrorIs(t, err, storage.ErrNotFound)
		assertNothingUnder(t, b, "tracks/fail/")
	}

	// A failed overwrite keeps the old object whole.
	put(t, b, "tracks/fail/kept.mp3", []byte("original"))
	_, err := b.Put(ctx, "tracks/fail/kept.mp3", &failingReader{r: bytes.NewReader(randomBytes(100)), after: 50}, "")
	require.Error(t, err)
	got, _ := read(t, b, "tracks/fail/kept.mp3", 0, -1)
	assert.Equal(t, "original", string(got))
}

func testCancelledPut(t *testing.T, b storage.Backend) {
	cctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	go func() {
		_, _ = pw.Write(randomBytes(6 << 20))
		cancel()
		_, _ = pw.Write(randomBytes(1 << 20))
		pw.Close()
	}()
	_, err := b.Put(cctx, "tracks/cancel/x.mp3", pr, "")
	require.Error(t, err)
	pr.CloseWithError(err)
	assertNothingUnder(t, b, "tracks/cancel/")
}
