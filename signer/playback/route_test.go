package playback

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/valyala/fasthttp"
)

func TestSplitTrackPath(t *testing.T) {
	for _, c := range []struct {
		path, id, action string
		ok               bool
	}{
		{"/v1/tracks/0190a0b4-0000-7000-8000-000000000001/stream", "0190a0b4-0000-7000-8000-000000000001", "stream", true},
		{"/v1/tracks/x/hls", "x", "hls", true},
		{"/v1/tracks/x/hls/extra", "", "", false},
		{"/v1/tracks/x", "", "", false},
		{"/v1/track/x/stream", "", "", false},
		{"/healthz", "", "", false},
	} {
		id, action, ok := splitTrackPath([]byte(c.path))
		assert.Equal(t, c.ok, ok, c.path)
		assert.Equal(t, c.id, string(id), c.path)
		assert.Equal(t, c.action, string(action), c.path)
	}
}

func FuzzTrackPath(f *testing.F) {
	f.Add("/v1/tracks/0190a0b4-0000-7000-8000-000000000001/stream")
	f.Add("/v1/tracks//")
	f.Add("/v1/tracks/{0190a0b4-0000-7000-8000-000000000001}/hls")
	f.Fuzz(func(t *testing.T, path string) {
		raw, action, ok := splitTrackPath([]byte(path))
		if !ok {
			return
		}
		assert.NotContains(t, string(action), "/")
		id, err := parseID(raw)
		if err == nil {
			// Only the canonical form parses, so one track has one URL.
			assert.Equal(t, strings.ToLower(string(raw)), id.String())
		}
	})
}

func TestClientIP(t *testing.T) {
	s := &Server{cfg: Config{TrustedProxies: []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8"),
	}}}
	for _, c := range []struct {
		name, peer, xff, want string
	}{
		{"untrusted peer: XFF ignored", "203.0.113.7", "1.2.3.4", "203.0.113.7"},
		{"trusted peer, one hop", "10.0.0.5", "1.2.3.4", "1.2.3.4"},
		{"trusted chain: rightmost untrusted", "10.0.0.5", "6.6.6.6, 1.2.3.4, 10.1.1.1", "1.2.3.4"},
		{"spoofed left part ignored", "10.0.0.5", "9.9.9.9, 1.2.3.4", "1.2.3.4"},
		{"trusted peer, no XFF", "10.0.0.5", "", "10.0.0.5"},
		{"malformed XFF: the peer", "10.0.0.5", "1.2.3.4, garbage", "10.0.0.5"},
		{"all trusted: the leftmost", "10.0.0.5", "10.9.9.9, 10.1.1.1", "10.9.9.9"},
		{"IPv6 client behind an IPv6 proxy", "fd00::1", "2001:db8::7", "2001:db8::7"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var req fasthttp.Request
			if c.xff != "" {
				req.Header.Set("X-Forwarded-For", c.xff)
			}
			ctx := &fasthttp.RequestCtx{}
			ctx.Init(&req, &net.TCPAddr{IP: net.ParseIP(c.peer), Port: 1}, nil)
			assert.Equal(t, c.want, s.clientIP(ctx).String())
		})
	}
}

func TestDownloadName(t *testing.T) {
	tr := trackFor("/tracks/x/abc.flac", ` Song: "Live" / 2024 `)
	assert.Equal(t, "Song_ _Live_ _ 2024.flac", downloadName(tr))
	assert.Equal(t, tr.ID.String()+".flac", downloadName(trackFor("/tracks/x/abc.flac", "  ")))

	// A long title is cut at a character's start: 119 bytes of ASCII, then
	// a 3-byte character across the 120-byte limit, is left at 119.
	long := downloadName(trackFor("/tracks/x/abc.mp3", strings.Repeat("a", 119)+"日本"))
	assert.True(t, utf8.ValidString(long), "%q", long)
	assert.Equal(t, strings.Repeat("a", 119)+".mp3", long)
	exact := downloadName(trackFor("/tracks/x/abc.mp3", strings.Repeat("日", 40)+"本"))
	assert.Equal(t, strings.Repeat("日", 40)+".mp3", exact, "120 bytes of whole characters stay")
}
