package orphans

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/playgate/playgate/api/catalog"
	"github.com/playgate/playgate/internal/pgtest"
	"github.com/playgate/playgate/origin/storage"
)

var pg *pgtest.Server

func TestMain(m *testing.M) { pgtest.Main(m, &pg) }

func TestFind(t *testing.T) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pg.NewDatabase(t))
	require.NoError(t, err)
	defer pool.Close()
	store := catalog.NewStore(pool, nil)
	dir := t.TempDir()
	b, err := storage.NewLocal(dir)
	require.NoError(t, err)
	defer b.Close()

	week := time.Now().Add(-7 * 24 * time.Hour)
	put := func(key string, modTime time.Time) string {
		_, err := b.Put(ctx, key, strings.NewReader(key), "")
		require.NoError(t, err)
		require.NoError(t, os.Chtimes(filepath.Join(dir, key), modTime, modTime))
		return key
	}
	track := func(title string) uuid.UUID {
		tr, err := store.CreateTrack(ctx, "alice", catalog.NewTrack{Title: title, Artist: "A", Visibility: catalog.Public})
		require.NoError(t, err)
		return tr.ID
	}
	withAudio := func(id uuid.UUID, sum string) string {
		key := put(catalog.OriginalKey(id, sum, "mp3"), week)
		_, err := store.SetAudio(ctx, id, "", catalog.Audio{Backend: "local", Key: key, ContentType: "audio/mpeg", Size: 1, SHA256: sum}, nil, nil)
		require.NoError(t, err)
		return key
	}

	// A live track: its original and package are named; the original it
	// replaced and a package that failed to be collected are not; a
	// replaced package in its grace period is waiting to be collected.
	live := track("Live")
	sum := strings.Repeat("a1", 32)
	current := withAudio(live, sum)
	pkg := "hls/" + live.String() + "/0123456789abcdef"
	_, err = store.FinishHLS(ctx, live, sum, pkg, 1000, false)
	require.NoError(t, err)
	kept := []string{current, put(pkg+"/master.m3u8", week), put(pkg+"/64k/seg.m4s", week)}
	graced := "hls/" + live.String() + "/aaaaaaaaaaaaaaaa"
	kept = append(kept, put(graced+"/master.m3u8", week))
	orphans := []string{
		put(catalog.OriginalKey(live, strings.Repeat("a0", 32), "mp3"), week),
		put("hls/"+live.String()+"/ffffffffffffffff/master.m3u8", week),
	}

	// A deleted track's objects.
	deleted := track("Deleted")
	orphans = append(orphans, withAudio(deleted, strings.Repeat("d0", 32)))
	_, err = store.DeleteTrack(ctx, deleted, nil)
	require.NoError(t, err)

	// Too young to judge, and not in playgate's layout.
	kept = append(kept,
		put(catalog.OriginalKey(uuid.New(), strings.Repeat("f0", 32), "mp3"), time.Now()),
		put("tracks/README", week),
		put("hls/"+live.String()+"/master.m3u8", week),
		put("tracks/not-a-uuid/x.mp3", week))

	for _, batch := range []int{0, 1} {
		f := &Finder{Store: store, Pending: map[string]bool{graced: true}, Cutoff: time.Now().Add(-24 * time.Hour), Batch: batch}
		var found []string
		require.NoError(t, f.Find(ctx, "local", b, func(o Orphan) error {
			assert.Equal(t, "local", o.Backend)
			found = append(found, o.Key)
			return nil
		}))
		assert.ElementsMatch(t, orphans, found, "batch %d", batch)
		for _, k := range kept {
			assert.False(t, slices.Contains(found, k), "%s is named or not judged", k)
		}
	}

	// What another backend holds is not what the track names.
	f := &Finder{Store: store, Cutoff: time.Now().Add(-24 * time.Hour)}
	var found []string
	require.NoError(t, f.Find(ctx, "s3", b, func(o Orphan) error { found = append(found, o.Key); return nil }))
	assert.Contains(t, found, current, "the track's original is in local, not s3")
}
