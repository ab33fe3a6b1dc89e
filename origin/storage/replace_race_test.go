package storage_test

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/playgate/playgate/origin/storage"
)

// Readers of objects that are replaced and deleted under them, through
// kept descriptors checked on every reuse, see a whole version or none:
// never a mix, never a short read (a Put is a rename over the key).
func TestLocalReadersSeeWholeVersionsWhileReplaced(t *testing.T) {
	b, err := storage.NewLocal(t.TempDir(), storage.KeepOpen(8), storage.RecheckKeptAfter(0))
	require.NoError(t, err)
	defer b.Close()
	ctx := t.Context()
	versions := [][]byte{bytes.Repeat([]byte("a"), 50_000), bytes.Repeat([]byte("b"), 70_000), bytes.Repeat([]byte("c"), 30_000)}
	keys := []string{"hls/t/p/1.m4s", "hls/t/p/2.m4s"}
	for _, k := range keys {
		_, err := b.Put(ctx, k, bytes.NewReader(versions[0]), "")
		require.NoError(t, err)
	}
	stop := time.Now().Add(time.Second)
	var bad atomic.Int64
	var reads atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; time.Now().Before(stop); i++ {
			k := keys[i%2]
			if i%7 == 0 {
				_ = b.Delete(ctx, k)
				continue
			}
			_, err := b.Put(ctx, k, bytes.NewReader(versions[i%3]), "")
			if err != nil {
				t.Error(err)
			}
		}
	})
	for g := 0; g < 6; g++ {
		wg.Go(func() {
			for i := 0; time.Now().Before(stop); i++ {
				f, obj, err := b.OpenFile(keys[i%2])
				if errors.Is(err, storage.ErrNotFound) {
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				got, err := io.ReadAll(f)
				f.Close()
				reads.Add(1)
				ok := int64(len(got)) == obj.Size
				if ok {
					ok = false
					for _, v := range versions {
						if bytes.Equal(got, v) {
							ok = true
						}
					}
				}
				if err != nil || !ok {
					bad.Add(1)
				}
			}
		})
	}
	wg.Wait()
	require.Positive(t, reads.Load())
	require.Zero(t, bad.Load(), "of %d reads", reads.Load())
}
