package m3u8

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// What ffmpeg 5.1 writes for one rendition (see SPEC §6).
const ffmpegMedia = `#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:6
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-MAP:URI="init_1.mp4"
#EXTINF:6.013968,
seg_000.m4s
#EXTINF:5.990748,
seg_001.m4s
#EXTINF:0.023220,
seg_002.m4s
#EXT-X-ENDLIST
`

func TestParseMedia(t *testing.T) {
	m, err := ParseMedia([]byte(ffmpegMedia))
	require.NoError(t, err)
	assert.Equal(t, 7, m.Version)
	assert.Equal(t, 6, m.TargetDuration)
	assert.Equal(t, "VOD", m.PlaylistType)
	assert.Equal(t, "init_1.mp4", m.MapURI)
	assert.True(t, m.EndList)
	require.Len(t, m.Segments, 3)
	assert.Equal(t, Segment{Duration: 5.990748, URI: "seg_001.m4s"}, m.Segments[1])
	assert.InDelta(t, 12.027936, m.Duration(), 1e-9)
	assert.Equal(t, []string{"init_1.mp4", "seg_000.m4s", "seg_001.m4s", "seg_002.m4s"}, m.URIs())

	again, err := ParseMedia(m.Encode())
	require.NoError(t, err)
	assert.Equal(t, m, again, "encode and parse round-trip")
}

func TestParseMaster(t *testing.T) {
	src := "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n" +
		"#EXT-X-STREAM-INF:BANDWIDTH=140800,AVERAGE-BANDWIDTH=130000,CODECS=\"mp4a.40.2\"\n128k/index.m3u8\n\n" +
		"#EXT-X-STREAM-INF:CODECS=\"mp4a.40.2,x\",BANDWIDTH=70400\n64k/index.m3u8\n"
	m, err := ParseMaster([]byte(src))
	require.NoError(t, err)
	assert.Equal(t, &Master{Version: 7, IndependentSegments: true, Variants: []Variant{
		{URI: "128k/index.m3u8", Bandwidth: 140800, AverageBandwidth: 130000, Codecs: "mp4a.40.2"},
		{URI: "64k/index.m3u8", Bandwidth: 70400, Codecs: "mp4a.40.2,x"},
	}}, m)
	again, err := ParseMaster(m.Encode())
	require.NoError(t, err)
	assert.Equal(t, m, again)
}

func TestParseRejects(t *testing.T) {
	for name, src := range map[string]string{
		"no header":                 "#EXT-X-VERSION:7\n",
		"EXTINF without URI":        "#EXTM3U\n#EXTINF:6,\n",
		"URI without EXTINF":        "#EXTM3U\nseg.m4s\n",
		"two EXTINF":                "#EXTM3U\n#EXTINF:6,\n#EXTINF:6,\nseg.m4s\n",
		"negative duration":         "#EXTM3U\n#EXTINF:-1,\nseg.m4s\n",
		"variant in media playlist": "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nx.m3u8\n",
		"map without URI":           "#EXTM3U\n#EXT-X-MAP:BYTERANGE=\"1@0\"\n",
	} {
		_, err := ParseMedia([]byte(src))
		assert.Error(t, err, name)
	}
	for name, src := range map[string]string{
		"no variants":            "#EXTM3U\n#EXT-X-VERSION:7\n",
		"no bandwidth":           "#EXTM3U\n#EXT-X-STREAM-INF:CODECS=\"a\"\nx.m3u8\n",
		"stream-inf without URI": "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n",
		"unterminated quote":     "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,CODECS=\"a\nx.m3u8\n",
		"segment in master":      "#EXTM3U\n#EXTINF:6,\nx.m4s\n",
		"duplicate attribute":    "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,BANDWIDTH=2\nx.m3u8\n",
	} {
		_, err := ParseMaster([]byte(src))
		assert.Error(t, err, name)
	}
	_, err := ParseMedia([]byte("#EXTM3U\n" + strings.Repeat("#", MaxSize)))
	assert.Error(t, err, "too large")
}

// Whatever the bytes, parsing never panics, and what parses survives an
// encode/parse round trip unchanged.
func FuzzParse(f *testing.F) {
	f.Add([]byte(ffmpegMedia))
	f.Add([]byte("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,CODECS=\"a,b\"\nx.m3u8\n"))
	f.Add([]byte("#EXTM3U\n#EXT-X-MAP:URI=\"\"\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if m, err := ParseMedia(b); err == nil {
			again, err := ParseMedia(m.Encode())
			if assert.NoError(t, err, "%q", b) {
				assert.Equal(t, len(m.Segments), len(again.Segments))
				assert.Equal(t, m.URIs(), again.URIs())
			}
		}
		if m, err := ParseMaster(b); err == nil {
			again, err := ParseMaster(m.Encode())
			if assert.NoError(t, err, "%q", b) {
				assert.Equal(t, m.Variants, again.Variants)
			}
		}
	})
}
