package trackcache

import (
	"encoding/hex"
	"path"
	"slices"
	"strings"

	"github.com/google/uuid"

	"github.com/playgate/playgate/api/catalog"
)

// A million cached tracks must fit the signer's memory (SPEC §12), and
// the two paths a track needs, "/tracks/{id}/{sha256}.{ext}" and
// "/hls/{id}/{package}/", were most of an entry: about 200 bytes of text,
// the id twice and the hashes in hex. A track keeps them as the raw
// hashes and builds the text on demand, into the caller's buffer on the
// hot path. Keys of any other shape (written by another tool), and a
// backend of another name, are kept verbatim behind one pointer that the
// usual track leaves nil.

// audioExts are the extensions uploads are stored with (the catalogue's
// formats); a track keeps an index into them.
var audioExts = func() []string {
	exts := make([]string, len(catalog.Formats))
	for i, f := range catalog.Formats {
		exts[i] = f.Ext
	}
	return exts
}()

// backends are the storage backends' names, kept the same way.
var backends = []string{"local", "s3"}

// oddPaths holds what a track could not keep in its compact form.
type oddPaths struct {
	objectPath string // "/" + key
	hlsDir     string // "/" + prefix + "/"
	backend    string
}

func (t *Track) odds() *oddPaths {
	if t.odd == nil {
		t.odd = &oddPaths{}
	}
	return t.odd
}

// SetObject records the original's key, "tracks/{id}/{sha256}.{ext}",
// and its backend. For building a Track only.
func (t *Track) SetObject(key, backend string) {
	t.hasAudio = true
	if i := slices.Index(backends, backend); i >= 0 {
		t.backend = uint8(i)
	} else {
		t.odds().backend = backend
	}
	prefix := "tracks/" + t.ID.String() + "/"
	if len(key) >= len(prefix)+66 && key[:len(prefix)] == prefix && key[len(prefix)+64] == '.' {
		sha, ext := key[len(prefix):len(prefix)+64], key[len(prefix)+65:]
		if i := slices.Index(audioExts, ext); i >= 0 && isLowerHex(sha) {
			_, _ = hex.Decode(t.sha[:], []byte(sha))
			t.ext = uint8(i)
			return
		}
	}
	t.odds().objectPath = "/" + key
}

// SetHLS records the ready package's prefix, "hls/{id}/{package}" with
// a 16-hex-digit package id. For building a Track only.
func (t *Track) SetHLS(prefix string) {
	t.hasHLS = true
	want := "hls/" + t.ID.String() + "/"
	if len(prefix) == len(want)+16 && prefix[:len(want)] == want && isLowerHex(prefix[len(want):]) {
		_, _ = hex.Decode(t.pkg[:], []byte(prefix[len(want):]))
		return
	}
	t.odds().hlsDir = "/" + prefix + "/"
}

// Backend is the name of the original's storage backend.
func (t *Track) Backend() string {
	if t.odd != nil && t.odd.backend != "" {
		return t.odd.backend
	}
	return backends[t.backend]
}

func (t *Track) oddObjectPath() string {
	if t.odd == nil {
		return ""
	}
	return t.odd.objectPath
}

func (t *Track) oddHLSDir() string {
	if t.odd == nil {
		return ""
	}
	return t.odd.hlsDir
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// HasAudio reports whether the track has a stored original.
func (t *Track) HasAudio() bool { return t.hasAudio }

// HasHLS reports whether the track has a ready HLS package.
func (t *Track) HasHLS() bool { return t.hasHLS }

// AppendObjectPath appends the original's URL path,
// "/tracks/{id}/{sha256}.{ext}".
func (t *Track) AppendObjectPath(dst []byte) []byte {
	return t.appendPath(dst, t.oddObjectPath(), "/tracks/", t.sha[:], ".", audioExts[t.ext])
}

// AppendHLSDir appends the package's directory, "/hls/{id}/{package}/".
func (t *Track) AppendHLSDir(dst []byte) []byte {
	return t.appendPath(dst, t.oddHLSDir(), "/hls/", t.pkg[:], "/", "")
}

// appendPath appends verbatim, or else root, the id, "/", the hash in
// hex and the tail (in two parts, so that no string is built for it).
func (t *Track) appendPath(dst []byte, verbatim, root string, hash []byte, tail1, tail2 string) []byte {
	if verbatim != "" {
		return append(dst, verbatim...)
	}
	dst = append(dst, root...)
	dst = appendUUID(dst, t.ID)
	dst = append(dst, '/')
	dst = hex.AppendEncode(dst, hash)
	return append(append(dst, tail1...), tail2...)
}

// ObjectPath is AppendObjectPath as a string ("" without audio).
func (t *Track) ObjectPath() string {
	if !t.hasAudio {
		return ""
	}
	return string(t.AppendObjectPath(nil))
}

// HLSDir is AppendHLSDir as a string ("" without a package).
func (t *Track) HLSDir() string {
	if !t.hasHLS {
		return ""
	}
	return string(t.AppendHLSDir(nil))
}

// Ext is the original's extension, without the dot.
func (t *Track) Ext() string {
	if !t.hasAudio {
		return ""
	}
	if p := t.oddObjectPath(); p != "" {
		return strings.TrimPrefix(path.Ext(p), ".")
	}
	return audioExts[t.ext]
}

// appendUUID appends id's canonical text form.
func appendUUID(dst []byte, id uuid.UUID) []byte {
	dst = hex.AppendEncode(dst, id[0:4])
	dst = append(dst, '-')
	dst = hex.AppendEncode(dst, id[4:6])
	dst = append(dst, '-')
	dst = hex.AppendEncode(dst, id[6:8])
	dst = append(dst, '-')
	dst = hex.AppendEncode(dst, id[8:10])
	dst = append(dst, '-')
	return hex.AppendEncode(dst, id[10:16])
}
