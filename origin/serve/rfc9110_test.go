package serve

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/playgate/playgate/origin/storage"
)

func TestParseRange(t *testing.T) {
	const size = 1000
	for _, c := range []struct {
		header string
		want   []byteRange
		err    error
	}{
		{"", nil, nil},
		{"bytes=0-99", []byteRange{{0, 100}}, nil},
		{"bytes=100-", []byteRange{{100, 900}}, nil},
		{"bytes=-500", []byteRange{{500, 500}}, nil},
		{"bytes=-5000", []byteRange{{0, 1000}}, nil},
		{"bytes=990-2000", []byteRange{{990, 10}}, nil},
		{"bytes=999-999", []byteRange{{999, 1}}, nil},
		{"bytes= 0-9 , 20-29", []byteRange{{0, 10}, {20, 10}}, nil},
		{"bytes=0-9,,20-29", []byteRange{{0, 10}, {20, 10}}, nil},
		{"bytes=1000-", nil, errUnsatisfiable},
		{"bytes=1000-1001,2000-", nil, errUnsatisfiable},
		{"bytes=-0", nil, errUnsatisfiable},
		{"bytes=1000-,0-0", []byteRange{{0, 1}}, nil},
		{"bytes=5-2", nil, nil},  // invalid: ignored
		{"bytes=a-b", nil, nil},  // invalid
		{"bytes=-", nil, nil},    // invalid
		{"bytes=1", nil, nil},    // invalid
		{"bytes=+1-2", nil, nil}, // no signs
		{"items=0-5", nil, nil},  // another unit
		{"bytes=", nil, nil},     // nothing asked
		{"bytes=99999999999999999999-", nil, nil},
		{"bytes=" + strings.Repeat("0-0,", maxRanges+1), nil, nil}, // too many
	} {
		got, err := parseRange(c.header, size)
		assert.Equal(t, c.err, err, c.header)
		assert.Equal(t, c.want, got, c.header)
	}
	got, err := parseRange("bytes=0-9", 0)
	assert.Nil(t, got, "an empty representation ignores Range")
	assert.NoError(t, err)
}

func TestCoalesce(t *testing.T) {
	assert.Equal(t, []byteRange{{0, 20}}, coalesce([]byteRange{{0, 10}, {5, 15}}))
	assert.Equal(t, []byteRange{{0, 20}}, coalesce([]byteRange{{10, 10}, {0, 10}}), "adjacent")
	assert.Equal(t, []byteRange{{0, 10}, {20, 10}}, coalesce([]byteRange{{20, 10}, {0, 10}}))
}

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"bytes=0-99", "bytes=-5", "bytes=5-,1-2", "bytes=9223372036854775807-"} {
		f.Add(s, int64(1000))
	}
	f.Fuzz(func(t *testing.T, h string, size int64) {
		if size < 0 {
			size = -size
		}
		if size < 0 {
			return
		}
		rs, err := parseRange(h, size)
		if err != nil {
			assert.Nil(t, rs)
			return
		}
		for _, r := range rs {
			// Every range returned lies inside the representation.
			assert.GreaterOrEqual(t, r.start, int64(0))
			assert.Positive(t, r.length)
			assert.LessOrEqual(t, r.start+r.length, size, "%q size %d", h, size)
		}
		if len(rs) > 0 {
			merged := coalesce(rs)
			for i := 1; i < len(merged); i++ {
				assert.Greater(t, merged[i].start, merged[i-1].start+merged[i-1].length)
			}
		}
		// What a remote backend is asked for, without the size, is what
		// the size would have made of the header.
		if r, ok := singleRange(h); ok && r.first < size {
			require.NoError(t, err)
			require.Len(t, rs, 1, "%q", h)
			end := size - 1
			if r.last >= 0 {
				end = min(r.last, size-1)
			}
			assert.Equal(t, byteRange{start: r.first, length: end - r.first + 1}, rs[0], "%q size %d", h, size)
		} else if ok && size > 0 {
			assert.ErrorIs(t, err, errUnsatisfiable, "%q size %d", h, size)
		}
	})
}

func TestSingleRange(t *testing.T) {
	for _, c := range []struct {
		h    string
		want rangeSpec
		ok   bool
	}{
		{"bytes=0-99", rangeSpec{0, 99}, true},
		{"bytes=100-", rangeSpec{100, -1}, true},
		{" bytes= 7-7 ,", rangeSpec{7, 7}, true},
		{"bytes=-500", rangeSpec{}, false}, // a suffix needs the size
		{"bytes=0-1,5-6", rangeSpec{}, false},
		{"bytes=0-1,2-3", rangeSpec{}, false}, // merged only once the size is known
		{"bytes=5-2", rangeSpec{}, false},
		{"bytes=", rangeSpec{}, false},
		{"items=0-1", rangeSpec{}, false},
		{"", rangeSpec{}, false},
	} {
		got, ok := singleRange(c.h)
		assert.Equal(t, c.ok, ok, "%q", c.h)
		assert.Equal(t, c.want, got, "%q", c.h)
	}
}

func TestEvaluateConditionals(t *testing.T) {
	mod := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	etag := `"abc"`
	before, at, after := "Thu, 01 Jan 2026 00:00:00 GMT", "Fri, 02 Jan 2026 03:04:05 GMT", "Sat, 03 Jan 2026 00:00:00 GMT"
	for _, c := range []struct {
		name string
		h    conditionalHeaders
		want precondition
	}{
		{"none", conditionalHeaders{}, proceed},
		{"If-None-Match matches", conditionalHeaders{ifNoneMatch: `"x", "abc"`}, notModified},
		{"If-None-Match weak matches", conditionalHeaders{ifNoneMatch: `W/"abc"`}, notModified},
		{"If-None-Match star", conditionalHeaders{ifNoneMatch: `*`}, notModified},
		{"If-None-Match differs", conditionalHeaders{ifNoneMatch: `"x"`}, proceed},
		{"If-Modified-Since after", conditionalHeaders{ifModifiedSince: after}, notModified},
		{"If-Modified-Since at", conditionalHeaders{ifModifiedSince: at}, notModified},
		{"If-Modified-Since before", conditionalHeaders{ifModifiedSince: before}, proceed},
		{"If-None-Match wins over If-Modified-Since", conditionalHeaders{ifNoneMatch: `"x"`, ifModifiedSince: after}, proceed},
		{"If-Match differs", conditionalHeaders{ifMatch: `"x"`}, failed},
		{"If-Match weak never matches", conditionalHeaders{ifMatch: `W/"abc"`}, failed},
		{"If-Match matches", conditionalHeaders{ifMatch: `"abc"`}, proceed},
		{"If-Unmodified-Since before", conditionalHeaders{ifUnmodifiedSince: before}, failed},
		{"If-Range etag matches", conditionalHeaders{ifRange: `"abc"`, hasRange: true}, proceed},
		{"If-Range etag differs", conditionalHeaders{ifRange: `"x"`, hasRange: true}, ignoreRange},
		{"If-Range weak etag", conditionalHeaders{ifRange: `W/"abc"`, hasRange: true}, ignoreRange},
		{"If-Range date equal", conditionalHeaders{ifRange: at, hasRange: true}, proceed},
		{"If-Range date differs", conditionalHeaders{ifRange: after, hasRange: true}, ignoreRange},
		{"If-Range without Range", conditionalHeaders{ifRange: `"x"`}, proceed},
	} {
		assert.Equal(t, c.want, c.h.evaluate(etag, mod.Add(300*time.Millisecond)), c.name)
	}
}

func TestObjectKey(t *testing.T) {
	for _, c := range []struct {
		raw, key string
		err      error
	}{
		{"/tracks/a/b.mp3", "tracks/a/b.mp3", nil},
		{"/hls/a/p/128k/index.m3u8", "hls/a/p/128k/index.m3u8", nil},
		{"/tracks/a/track%2042.mp3", "tracks/a/track 42.mp3", nil},
		{"/etc/passwd", "", errNotFound},
		{"/uploads/x/tmp", "", errNotFound},
		{"/trackssecret/x", "", errNotFound},
		{"/tracks/../etc/passwd", "", errBadPath},
		{"/tracks/%2e%2e/etc/passwd", "", errBadPath},
		{"/tracks%2Fa/b.mp3", "", errBadPath},
		{"/tracks/a%5cb", "", errBadPath},
		{"/tracks/a%00b", "", errBadPath},
		{"/tracks/a\\b", "", errBadPath},
		{"/tracks//a", "", errBadPath},
		{"/tracks/", "", errBadPath},
		{"/tracks/.hidden", "", errBadPath},
		{"/tracks/a/%zz", "", errBadPath},
		{"/", "", errBadPath},
		{"", "", errBadPath},
	} {
		key, err := objectKey(c.raw)
		assert.Equal(t, c.err, err, c.raw)
		assert.Equal(t, c.key, key, c.raw)
	}
}

// objectKeyByRule is objectKey's rule written plainly, every check on
// every path: objectKey skips what a path without escapes cannot need.
func objectKeyByRule(rawPath string) (string, error) {
	if len(rawPath) < 2 || rawPath[0] != '/' {
		return "", errBadPath
	}
	lower := strings.ToLower(rawPath)
	for _, bad := range []string{"%2f", "%5c", "%00", "\\", "\x00"} {
		if strings.Contains(lower, bad) {
			return "", errBadPath
		}
	}
	p, err := url.PathUnescape(rawPath[1:])
	if err != nil || storage.ValidateKey(p) != nil {
		return "", errBadPath
	}
	if !strings.HasPrefix(p, "tracks/") && !strings.HasPrefix(p, "hls/") {
		return "", errNotFound
	}
	return p, nil
}

func FuzzObjectKey(f *testing.F) {
	for _, s := range []string{"/tracks/a/b.mp3", "/hls/x/../y", "/tracks/%2e%2e/x", "/tracks/a%2fb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		key, err := objectKey(raw)
		wantKey, wantErr := objectKeyByRule(raw)
		assert.Equal(t, wantErr, err, "%q", raw)
		assert.Equal(t, wantKey, key, "%q", raw)
		if err != nil {
			return
		}
		assert.True(t, strings.HasPrefix(key, "tracks/") || strings.HasPrefix(key, "hls/"))
		for _, seg := range strings.Split(key, "/") {
			assert.NotEqual(t, "..", seg)
			assert.NotEmpty(t, seg)
		}
		assert.NotContains(t, key, "\x00")
		assert.NotContains(t, key, "\\")
	})
}

func TestContentHash(t *testing.T) {
	h64 := strings.Repeat("ab", 32)
	h32 := strings.Repeat("cd", 16)
	got, ok := contentHash("tracks/x/" + h64 + ".mp3")
	assert.True(t, ok)
	assert.Equal(t, h64, got)
	_, ok = contentHash("hls/x/p/128k/" + h32 + ".m4s")
	assert.True(t, ok)
	for _, k := range []string{"hls/x/p/master.m3u8", "tracks/x/" + strings.ToUpper(h64) + ".mp3", "tracks/x/" + h32 + "z.mp3"} {
		_, ok := contentHash(k)
		assert.False(t, ok, k)
	}
}

func TestAcceptsGzip(t *testing.T) {
	for h, want := range map[string]bool{
		"gzip": true, "br, gzip;q=0.8": true, "GZIP": true, "*": true,
		"": false, "br": false, "gzip;q=0": false, "gzip; q=0.0": false, "identity": false,
	} {
		var req = newCtx(h)
		assert.Equal(t, want, acceptsGzip(req), h)
	}
}

func TestAppendHTTPDate(t *testing.T) {
	for _, c := range []struct {
		t    time.Time
		want string
	}{
		{time.Date(1994, time.November, 6, 8, 49, 37, 0, time.UTC), "Sun, 06 Nov 1994 08:49:37 GMT"},
		{time.Date(2026, time.December, 31, 23, 59, 59, 999_999_999, time.UTC), "Thu, 31 Dec 2026 23:59:59 GMT"},
		// Another zone is written in GMT.
		{time.Date(2026, time.January, 1, 0, 30, 0, 0, time.FixedZone("CET", 3600)), "Wed, 31 Dec 2025 23:30:00 GMT"},
		{time.Date(1, time.January, 1, 0, 0, 0, 0, time.UTC), "Mon, 01 Jan 0001 00:00:00 GMT"},
		// Years of five digits take the general path.
		{time.Date(12345, time.March, 4, 5, 6, 7, 0, time.UTC), "Sun, 04 Mar 12345 05:06:07 GMT"},
	} {
		assert.Equal(t, c.want, string(appendHTTPDate(nil, c.t)), "%v", c.t)
	}
	assert.Equal(t, "x:Sun, 06 Nov 1994 08:49:37 GMT", string(appendHTTPDate([]byte("x:"), time.Unix(784111777, 0))), "appends")
}

// FuzzAppendHTTPDate holds the fast formatting to the standard library's.
func FuzzAppendHTTPDate(f *testing.F) {
	for _, s := range []int64{0, 784111777, -62135596800, 253402300799, 253402300800, -62135596801} {
		f.Add(s, int64(0))
	}
	f.Fuzz(func(t *testing.T, sec, nsec int64) {
		tm := time.Unix(sec, nsec)
		want := tm.UTC().Format(http.TimeFormat)
		if got := string(appendHTTPDate(nil, tm)); got != want {
			t.Fatalf("%d.%09d: %q, want %q", sec, nsec, got, want)
		}
	})
}

func BenchmarkAppendHTTPDate(b *testing.B) {
	tm := time.Date(2026, time.November, 27, 15, 4, 5, 0, time.UTC)
	buf := make([]byte, 0, len(http.TimeFormat))
	b.Run("appendHTTPDate", func(b *testing.B) {
		for b.Loop() {
			buf = appendHTTPDate(buf[:0], tm)
		}
	})
	b.Run("AppendFormat", func(b *testing.B) {
		for b.Loop() {
			buf = tm.UTC().AppendFormat(buf[:0], http.TimeFormat)
		}
	})
}
