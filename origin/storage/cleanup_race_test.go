package storage_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/playgate/playgate/origin/storage"
)

// Puts and Renames racing the directory removal of other Renames and
// Deletes (removeEmptyParents) never fail: a directory a write needs is
// made again when a concurrent clean-up takes it.
func TestLocalWritesSurviveConcurrentCleanUps(t *testing.T) {
	b, err := storage.NewLocal(t.TempDir())
	require.NoError(t, err)
	defer b.Close()
	ctx := t.Context()
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for g := 0; g < 8; g++ {
		wg.Go(func() {
			for i := 0; i < 60; i++ {
				tmp := fmt.Sprintf("uploads/t%d/%d", i%3, g)
				if _, err := b.Put(ctx, tmp, strings.NewReader("audio"), ""); err != nil {
					errs <- err
					return
				}
				final := fmt.Sprintf("tracks/t%d/%d-%d.mp3", i%3, g, i)
				if err := b.Rename(ctx, tmp, final); err != nil {
					errs <- err
					return
				}
				if err := b.Delete(ctx, final); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
