package trackcache

import (
	"strings"
	"testing"
	"unique"
	"unsafe"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
)

var pathsID = uuid.MustParse("0190a0b4-0000-7000-8000-000000000001")

const sha = "c4ff534378040eca27f54b542bba32f42fc498315cf88621c6a282e4e1274bf3"

// Whatever shape a key has, the track gives back exactly its path; the
// usual shapes are kept as hashes, any other verbatim.
func TestObjectPaths(t *testing.T) {
	id := pathsID.String()
	for _, c := range []struct {
		name, key string
		compact   bool
		ext       string
	}{
		{"canonical", "tracks/" + id + "/" + sha + ".mp3", true, "mp3"},
		{"canonical flac", "tracks/" + id + "/" + sha + ".flac", true, "flac"},
		{"upper-case hex", "tracks/" + id + "/" + strings.ToUpper(sha) + ".mp3", false, "mp3"},
		{"unknown extension", "tracks/" + id + "/" + sha + ".xyz", false, "xyz"},
		{"no extension", "tracks/" + id + "/" + sha + ".", false, ""},
		{"another track's id", "tracks/0190a0b4-0000-7000-8000-000000000002/" + sha + ".mp3", false, "mp3"},
		{"short hash", "tracks/" + id + "/" + sha[:60] + ".mp3", false, "mp3"},
		{"other layout", "tracks/x/abc.flac", false, "flac"},
		{"dot in a directory", "tracks/a.b/c", false, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr := &Track{ID: pathsID}
			assert.False(t, tr.HasAudio())
			assert.Equal(t, "", tr.ObjectPath())
			tr.SetObject(c.key, "local")
			assert.True(t, tr.HasAudio())
			assert.Equal(t, "/"+c.key, tr.ObjectPath())
			assert.Equal(t, "/"+c.key, string(tr.AppendObjectPath([]byte("x")))[1:], "appends")
			assert.Equal(t, c.compact, tr.odd == nil, "kept as a hash")
			assert.Equal(t, c.ext, tr.Ext())
			assert.Equal(t, "local", tr.Backend())
		})
	}
}

func TestHLSDirs(t *testing.T) {
	id := pathsID.String()
	for _, c := range []struct {
		name, prefix string
		compact      bool
	}{
		{"canonical", "hls/" + id + "/0123456789abcdef", true},
		{"long package id", "hls/" + id + "/0123456789abcdef0", false},
		{"not hex", "hls/" + id + "/p1", false},
		{"upper-case hex", "hls/" + id + "/0123456789ABCDEF", false},
		{"another track's id", "hls/0190a0b4-0000-7000-8000-000000000002/0123456789abcdef", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr := &Track{ID: pathsID}
			assert.False(t, tr.HasHLS())
			tr.SetHLS(c.prefix)
			assert.True(t, tr.HasHLS())
			assert.Equal(t, "/"+c.prefix+"/", tr.HLSDir())
			assert.Equal(t, c.compact, tr.odd == nil, "kept as a hash")
		})
	}
}

func TestBackends(t *testing.T) {
	for _, name := range []string{"local", "s3", "minio-old"} {
		tr := &Track{ID: pathsID}
		tr.SetObject("tracks/"+pathsID.String()+"/"+sha+".mp3", name)
		assert.Equal(t, name, tr.Backend())
		assert.Equal(t, name == "minio-old", tr.odd != nil, "only an unknown name is kept aside")
	}
}

// A million tracks are cached: each byte of Track is a megabyte. Go
// allocates it in a 112-byte size class; one byte more is 128.
func TestTrackSize(t *testing.T) {
	assert.LessOrEqual(t, unsafe.Sizeof(Track{}), uintptr(112))
}

// The point of it: an entry of the usual shape holds no path text.
func TestCompactCost(t *testing.T) {
	tr := &Track{ID: pathsID, owner: unique.Make("alice"), Title: "Song"}
	tr.SetObject("tracks/"+pathsID.String()+"/"+sha+".mp3", "s3")
	tr.SetHLS("hls/" + pathsID.String() + "/0123456789abcdef")
	assert.Equal(t, int64(unsafe.Sizeof(*tr))+int64(len("Song"))+ristrettoEntryBytes, tr.cost())
	assert.Less(t, tr.cost(), int64(300), "New sizes the counters for 300-byte entries")
}

func TestAppendsWithoutAllocating(t *testing.T) {
	tr := &Track{ID: pathsID}
	tr.SetObject("tracks/"+pathsID.String()+"/"+sha+".mp3", "local")
	tr.SetHLS("hls/" + pathsID.String() + "/0123456789abcdef")
	buf := make([]byte, 0, 256)
	allocs := testing.AllocsPerRun(100, func() {
		buf = tr.AppendObjectPath(buf[:0])
		buf = tr.AppendHLSDir(buf[:0])
	})
	assert.Zero(t, allocs)
}

// Any key round-trips, whichever way it is kept.
func FuzzPaths(f *testing.F) {
	id := pathsID.String()
	f.Add("tracks/"+id+"/"+sha+".mp3", "hls/"+id+"/0123456789abcdef")
	f.Add("tracks/x/abc.flac", "hls/"+id+"/p1")
	f.Add("tracks/"+id+"/"+sha+".", "hls/"+id+"/")
	f.Fuzz(func(t *testing.T, key, prefix string) {
		tr := &Track{ID: pathsID}
		tr.SetObject(key, "local")
		tr.SetHLS(prefix)
		if got := tr.ObjectPath(); got != "/"+key {
			t.Fatalf("object path %q from key %q", got, key)
		}
		if got := tr.HLSDir(); got != "/"+prefix+"/" {
			t.Fatalf("HLS dir %q from prefix %q", got, prefix)
		}
	})
}
