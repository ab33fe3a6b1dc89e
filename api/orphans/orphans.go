// Package orphans finds the objects in storage that no track names: what
// a delete that failed left behind (the api counts those failures in
// playgate_api_orphan_objects_total and logs their keys), the objects of
// a track whose delete did not finish, or a replaced package whose
// collection could not be scheduled. `api orphans` lists them, and with
// --delete removes them.
//
// Objects under uploads/ are not judged here: the packaging workers
// sweep those (hls.SweepArgs).
package orphans

import (
	"context"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/playgate/playgate/api/catalog"
	"github.com/playgate/playgate/origin/storage"
)

// Orphan is an object that no live track names.
type Orphan struct {
	Backend string
	storage.Object
}

// Finder decides which objects are orphans.
type Finder struct {
	Store *catalog.Store
	// Pending are the package prefixes ("hls/{track}/{package}") waiting
	// out their grace period before collection: no track names them, and
	// players may still be on them (hls.Queue.PendingCollections).
	Pending map[string]bool
	// Cutoff: objects modified since are never orphans. A promoted upload
	// is named by its track a moment after it lands, and a package only
	// once all its files are stored.
	Cutoff time.Time
	// Batch bounds the tracks looked up in one query (default 500).
	Batch int
}

// Find calls fn for every orphan under tracks/ and hls/ in b, which is
// configured as backend.
func (f *Finder) Find(ctx context.Context, backend string, b storage.Backend, fn func(Orphan) error) error {
	batch := f.Batch
	if batch <= 0 {
		batch = 500
	}
	for _, prefix := range []string{"tracks/", "hls/"} {
		var held []storage.Object
		tracks := map[uuid.UUID]bool{}
		judge := func() error {
			if len(held) == 0 {
				return nil
			}
			live, err := f.Store.LiveObjects(ctx, slices.Collect(maps.Keys(tracks)))
			if err != nil {
				return err
			}
			for _, o := range held {
				if f.orphan(backend, o.Key, live) {
					if err := fn(Orphan{Backend: backend, Object: o}); err != nil {
						return err
					}
				}
			}
			held = held[:0]
			clear(tracks)
			return nil
		}
		err := b.List(ctx, prefix, func(o storage.Object) error {
			track, ok := trackOf(o.Key)
			if !ok || !o.ModTime.Before(f.Cutoff) {
				return nil // not in playgate's layout, or too young to judge
			}
			if !tracks[track] && len(tracks) == batch {
				if err := judge(); err != nil {
					return err
				}
			}
			tracks[track] = true
			held = append(held, o)
			return nil
		})
		if err != nil {
			return err
		}
		if err := judge(); err != nil {
			return err
		}
	}
	return nil
}

// orphan reports whether no live track names key in backend.
func (f *Finder) orphan(backend, key string, live map[uuid.UUID]catalog.Objects) bool {
	track, _ := trackOf(key)
	t, ok := live[track]
	named := ok && t.Backend == backend
	if strings.HasPrefix(key, "tracks/") {
		return !(named && t.Original == key)
	}
	pkg := packageOf(key)
	return !f.Pending[pkg] && !(named && t.HLSPrefix == pkg)
}

// trackOf reads the track id from "tracks/{id}/{file}" or
// "hls/{id}/{package}/…".
func trackOf(key string) (uuid.UUID, bool) {
	parts := strings.SplitN(key, "/", 4)
	if (parts[0] == "tracks" && len(parts) != 3) || (parts[0] == "hls" && len(parts) != 4) {
		return uuid.UUID{}, false
	}
	id, err := uuid.Parse(parts[1])
	if err != nil || id.String() != parts[1] {
		return uuid.UUID{}, false
	}
	return id, true
}

// packageOf is "hls/{id}/{package}" of a key under it.
func packageOf(key string) string {
	parts := strings.SplitN(key, "/", 4)
	return strings.Join(parts[:3], "/")
}
