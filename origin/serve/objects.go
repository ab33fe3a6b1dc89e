package serve

import (
	"errors"
	"net/url"
	"path"
	"strings"

	"github.com/playgate/playgate/origin/storage"
)

var (
	errBadPath  = errors.New("malformed object path")
	errNotFound = errors.New("no such object")
)

// objectKey maps a raw request path to an object key (SPEC §5.1). Only
// keys under tracks/ and hls/ exist; encoded slashes, backslashes and
// NULs, dot segments and anything storage.ValidateKey refuses are
// errBadPath, decided before storage is touched.
func objectKey(rawPath string) (string, error) {
	if len(rawPath) < 2 || rawPath[0] != '/' {
		return "", errBadPath
	}
	p := rawPath[1:]
	// Keys the system makes need no escapes; a path without any is its
	// key as it is. Backslashes and NULs, raw, ValidateKey refuses.
	if strings.IndexByte(p, '%') >= 0 {
		lower := strings.ToLower(p)
		for _, bad := range []string{"%2f", "%5c", "%00"} {
			if strings.Contains(lower, bad) {
				return "", errBadPath
			}
		}
		var err error
		if p, err = url.PathUnescape(p); err != nil {
			return "", errBadPath
		}
	}
	if storage.ValidateKey(p) != nil {
		return "", errBadPath
	}
	if !strings.HasPrefix(p, "tracks/") && !strings.HasPrefix(p, "hls/") {
		return "", errNotFound
	}
	return p, nil
}

// contentTypes is SPEC §5.3's table (Apple's for HLS).
var contentTypes = map[string]string{
	".m3u8": "application/vnd.apple.mpegurl",
	".m4s":  "video/iso.segment",
	".mp4":  "audio/mp4",
	".ts":   "video/mp2t",
	".aac":  "audio/aac",
	".mp3":  "audio/mpeg",
	".flac": "audio/flac",
	".ogg":  "audio/ogg",
	".opus": "audio/ogg",
	".wav":  "audio/wav",
	".m4a":  "audio/mp4",
}

func contentType(key string) string {
	if ct, ok := contentTypes[path.Ext(key)]; ok {
		return ct
	}
	return "application/octet-stream"
}

func isPlaylist(key string) bool { return strings.HasSuffix(key, ".m3u8") }

// contentHash returns the hash a content-addressed key is named after:
// originals "tracks/{id}/{sha256}.{ext}" (64 hex) and HLS segments and
// init files "{hash}.m4s" / "{hash}.mp4" (32 or 64 hex). Such an object
// never changes, so the hash is its strong ETag and it is immutable.
func contentHash(key string) (string, bool) {
	base := path.Base(key)
	stem := strings.TrimSuffix(base, path.Ext(base))
	if len(stem) != 32 && len(stem) != 64 {
		return "", false
	}
	for i := 0; i < len(stem); i++ {
		c := stem[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "", false
		}
	}
	return stem, true
}
