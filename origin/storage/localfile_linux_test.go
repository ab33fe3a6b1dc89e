package storage

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// Both ways of opening (Linux's openat2, and os.Root where it is missing)
// give the same sections: read with pread, offered to sendfile by
// descriptor and offset, closed once.
func TestLocalFileSections(t *testing.T) {
	for _, fallback := range []bool{false, true} {
		name := "openat2"
		if fallback {
			name = "os.Root"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			l, err := NewLocal(dir)
			require.NoError(t, err)
			defer l.Close()
			if fallback {
				if l.beneath == nil {
					t.Skip("no openat2 here: the fallback is the only way")
				}
				l.beneath.unsupported.Store(true)
			}
			data := make([]byte, 100_000)
			_, _ = rand.Read(data)
			const key = "tracks/t/0123.mp3"
			_, err = l.Put(t.Context(), key, bytes.NewReader(data), "")
			require.NoError(t, err)

			f, obj, err := l.OpenFile(key)
			require.NoError(t, err)
			assert.Equal(t, int64(len(data)), obj.Size)
			fd, off, n := f.Section()
			assert.GreaterOrEqual(t, fd, 0)
			assert.Equal(t, [2]int64{0, int64(len(data))}, [2]int64{off, n})

			require.NoError(t, f.Narrow(1000, 5000))
			_, off, n = f.Section()
			assert.Equal(t, [2]int64{1000, 5000}, [2]int64{off, n})
			got, err := io.ReadAll(f)
			require.NoError(t, err)
			assert.Equal(t, data[1000:6000], got)

			require.NoError(t, f.Narrow(90_000, -1), "to the end")
			got, err = io.ReadAll(f)
			require.NoError(t, err)
			assert.Equal(t, data[90_000:], got)
			require.NoError(t, f.Narrow(0, 1<<30), "clamped to the object")
			_, _, n = f.Section()
			assert.Equal(t, int64(len(data)), n)
			assert.Error(t, f.Narrow(-1, 10))
			assert.Error(t, f.Narrow(int64(len(data))+1, 10))

			// A file cut short under an open section ends in an error, not
			// in a short body passed off as whole.
			require.NoError(t, f.Narrow(0, -1))
			require.NoError(t, os.Truncate(filepath.Join(dir, key), 50_000))
			_, err = io.ReadAll(f)
			assert.ErrorIs(t, err, io.ErrUnexpectedEOF)

			require.NoError(t, f.Close())
			assert.Error(t, f.Close(), "a second close touches no other descriptor")

			_, _, err = l.OpenFile("tracks/t")
			assert.ErrorIs(t, err, ErrNotFound, "a directory is not an object")
		})
	}
}

func fdOpen(fd int) bool {
	_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	return err == nil
}

// Kept descriptors serve later reads of the same object, each at its own
// offsets, until the object is replaced or deleted; one evicted while a
// read still holds it stays open until that read closes it.
func TestKeptFiles(t *testing.T) {
	put := func(t *testing.T, l *Local, key string, size int) []byte {
		data := make([]byte, size)
		_, _ = rand.Read(data)
		_, err := l.Put(t.Context(), key, bytes.NewReader(data), "")
		require.NoError(t, err)
		return data
	}
	readAll := func(t *testing.T, l *Local, key string) ([]byte, int) {
		f, _, err := l.OpenFile(key)
		require.NoError(t, err)
		defer f.Close()
		fd, _, _ := f.Section()
		b, err := io.ReadAll(f)
		require.NoError(t, err)
		return b, fd
	}

	keeping := func(t *testing.T, n int, opts ...LocalOption) *Local {
		l, err := NewLocal(t.TempDir(), append([]LocalOption{KeepOpen(n)}, opts...)...)
		require.NoError(t, err)
		if l.beneath == nil {
			t.Skip("no openat2 here")
		}
		return l
	}

	t.Run("reuse", func(t *testing.T) {
		l := keeping(t, 4)
		a := put(t, l, "hls/a.m4s", 50_000)
		f1, _, err := l.OpenFile("hls/a.m4s")
		require.NoError(t, err)
		f2, _, err := l.OpenFile("hls/a.m4s")
		require.NoError(t, err)
		fd1, _, _ := f1.Section()
		fd2, _, _ := f2.Section()
		assert.Equal(t, fd1, fd2, "one descriptor for both reads")
		head := make([]byte, 10)
		_, err = io.ReadFull(f1, head)
		require.NoError(t, err)
		all, err := io.ReadAll(f2)
		require.NoError(t, err)
		rest, err := io.ReadAll(f1)
		require.NoError(t, err)
		assert.Equal(t, a, all)
		assert.Equal(t, a, append(head, rest...), "each read keeps its own offset")
		require.NoError(t, f1.Close())
		require.NoError(t, f2.Close())
		assert.True(t, fdOpen(fd1), "kept after its reads closed")

		// Replaced by rename: the kept inode lost its link. (The numbers
		// of closed descriptors are reused, so the test follows the
		// kept entries.)
		old := l.beneath.kept.files["hls/a.m4s"]
		a2 := put(t, l, "hls/a.m4s", 40_000)
		got, _ := readAll(t, l, "hls/a.m4s")
		assert.Equal(t, a2, got)
		assert.Zero(t, old.refs.Load(), "the replaced file's descriptor is closed")
		assert.NotSame(t, old, l.beneath.kept.files["hls/a.m4s"])

		// Deleted: with every reuse checked, never served from the kept
		// descriptor.
		old = l.beneath.kept.files["hls/a.m4s"]
		require.NoError(t, l.Delete(t.Context(), "hls/a.m4s"))
		_, _, err = l.OpenFile("hls/a.m4s")
		assert.ErrorIs(t, err, ErrNotFound)
		assert.Zero(t, old.refs.Load())
		assert.NotContains(t, l.beneath.kept.files, "hls/a.m4s")

		require.NoError(t, l.Close())
	})

	// Within the recheck interval a kept descriptor is reused without a
	// look at the file, so an object deleted by another process (the api)
	// is still served whole; after it, the deletion is seen.
	t.Run("recheck interval", func(t *testing.T) {
		for _, c := range []struct {
			recheck  time.Duration
			wait     time.Duration
			stillOld bool
		}{
			{time.Hour, 0, true},
			{time.Millisecond, 20 * time.Millisecond, false},
		} {
			l := keeping(t, 4, RecheckKeptAfter(c.recheck))
			a := put(t, l, "hls/a.m4s", 50_000)
			readAll(t, l, "hls/a.m4s")
			require.NoError(t, os.Remove(filepath.Join(l.Dir(), "hls/a.m4s")))
			time.Sleep(c.wait)
			f, _, err := l.OpenFile("hls/a.m4s")
			if !c.stillOld {
				assert.ErrorIs(t, err, ErrNotFound, "recheck %v", c.recheck)
				require.NoError(t, l.Close())
				continue
			}
			require.NoError(t, err)
			assert.True(t, f.Reused())
			got, err := io.ReadAll(f)
			require.NoError(t, err)
			assert.Equal(t, a, got, "the whole of the old file")
			require.NoError(t, f.Close())
			require.NoError(t, l.Close())
		}
	})

	// What this Local itself writes is seen at once, however long kept
	// files are trusted: Put reports the new object, not the kept one.
	t.Run("own writes", func(t *testing.T) {
		l := keeping(t, 4, RecheckKeptAfter(time.Hour))
		put(t, l, "hls/a.m4s", 50_000)
		readAll(t, l, "hls/a.m4s")
		a2 := make([]byte, 40_000)
		_, _ = rand.Read(a2)
		obj, err := l.Put(t.Context(), "hls/a.m4s", bytes.NewReader(a2), "")
		require.NoError(t, err)
		assert.EqualValues(t, len(a2), obj.Size)
		got, _ := readAll(t, l, "hls/a.m4s")
		assert.Equal(t, a2, got)

		put(t, l, "hls/b.m4s", 30_000)
		readAll(t, l, "hls/b.m4s") // kept, and then renamed over
		require.NoError(t, l.Rename(t.Context(), "hls/a.m4s", "hls/b.m4s"))
		_, _, err = l.OpenFile("hls/a.m4s")
		assert.ErrorIs(t, err, ErrNotFound, "renamed away")
		got, _ = readAll(t, l, "hls/b.m4s")
		assert.Equal(t, a2, got)

		require.NoError(t, l.Delete(t.Context(), "hls/b.m4s"))
		_, _, err = l.OpenFile("hls/b.m4s")
		assert.ErrorIs(t, err, ErrNotFound, "deleted")
		assert.Zero(t, l.Kept())
		require.NoError(t, l.Close())
	})

	t.Run("eviction", func(t *testing.T) {
		l := keeping(t, 1)
		a := put(t, l, "hls/a.m4s", 50_000)
		put(t, l, "hls/b.m4s", 50_000)
		held, _, err := l.OpenFile("hls/a.m4s")
		require.NoError(t, err)
		heldFD, _, _ := held.Section()
		_, bFD := readAll(t, l, "hls/b.m4s") // takes a's place
		assert.Len(t, l.beneath.kept.files, 1)
		got, err := io.ReadAll(held)
		require.NoError(t, err)
		assert.Equal(t, a, got, "an evicted file stays readable while held")
		require.NoError(t, held.Close())
		assert.False(t, fdOpen(heldFD), "and is closed by its last reader")
		assert.True(t, fdOpen(bFD))
		require.NoError(t, l.Close())
		assert.False(t, fdOpen(bFD), "Close closes what is kept")
	})

	t.Run("off", func(t *testing.T) {
		l, err := NewLocal(t.TempDir())
		require.NoError(t, err)
		defer l.Close()
		put(t, l, "hls/a.m4s", 1000)
		f1, _, err := l.OpenFile("hls/a.m4s")
		require.NoError(t, err)
		defer f1.Close()
		f2, _, err := l.OpenFile("hls/a.m4s")
		require.NoError(t, err)
		defer f2.Close()
		fd1, _, _ := f1.Section()
		fd2, _, _ := f2.Section()
		assert.NotEqual(t, fd1, fd2)
	})
}

// Readers that share kept descriptors while the object is replaced and
// deleted under them each read one whole version, never a mix of two
// and never a short one: the promise RecheckKeptAfter rests on.
func TestKeptFilesUnderConcurrentWrites(t *testing.T) {
	l, err := NewLocal(t.TempDir(), KeepOpen(4), RecheckKeptAfter(time.Millisecond))
	require.NoError(t, err)
	defer l.Close()
	if l.beneath == nil {
		t.Skip("no openat2 here")
	}
	const key = "hls/a.m4s"
	versions := make([][]byte, 4)
	for i := range versions {
		versions[i] = make([]byte, 20_000+i*7_000)
		_, _ = rand.Read(versions[i])
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var reads atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				f, obj, err := l.OpenFile(key)
				if errors.Is(err, ErrNotFound) {
					continue
				}
				if !assert.NoError(t, err) {
					return
				}
				got, err := io.ReadAll(f)
				f.Close()
				if !assert.NoError(t, err) {
					return
				}
				assert.Len(t, got, int(obj.Size), "the size read with the descriptor")
				assert.True(t, slices.ContainsFunc(versions, func(v []byte) bool { return bytes.Equal(v, got) }),
					"one whole version (%d bytes)", len(got))
				reads.Add(1)
			}
		}()
	}
	for i := range 60 { // each Put syncs: ~10 ms here
		if i%10 == 9 {
			require.NoError(t, l.Delete(t.Context(), key))
		} else {
			_, err := l.Put(t.Context(), key, bytes.NewReader(versions[i%len(versions)]), "")
			require.NoError(t, err)
		}
		time.Sleep(200 * time.Microsecond)
	}
	close(stop)
	wg.Wait()
	assert.Positive(t, reads.Load())
}
