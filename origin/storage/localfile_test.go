package storage

import (
	"bytes"
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
