//go:build !race

package token

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Signing is on the hot path of every play: it allocates nothing (the
// race detector's instrumentation allocates, hence the build tag).
func TestBunnySignDoesNotAllocate(t *testing.T) {
	for _, scheme := range []BunnyScheme{BunnyHMAC, BunnySHA256, BunnyMD5} {
		s, err := NewBunny(scheme, "https://zone.b-cdn.net", []byte("0d1c3a6e-9f7b-4b8e-8f5a-2c1d0e9f8a7b"))
		require.NoError(t, err)
		reqs := []Request{
			{Path: "/tracks/0190a0b4-0000-7000-8000-000000000001/c4ff5343.mp3", Expires: 2_000_000_000, IP: netip.MustParseAddr("2001:db8::1")},
		}
		if scheme != BunnyMD5 {
			reqs = append(reqs, Request{Path: "/hls/a/p/master.m3u8", TokenPath: "/hls/a/p/", PathForm: true, Expires: 2_000_000_000, Countries: "CA,US", Limit: 100})
		}
		buf := make([]byte, 0, 512)
		for _, r := range reqs {
			allocs := testing.AllocsPerRun(1000, func() {
				buf, err = s.AppendURL(buf[:0], &r)
			})
			require.NoError(t, err)
			assert.Zero(t, allocs, "scheme %d allocates %.1f times per URL", scheme, allocs)
		}
	}
}
