// Package m3u8 reads and writes the HLS playlists playgate makes (RFC
// 8216): master playlists of audio variants and VOD media playlists of
// fMP4 segments. It is plain Go because the m3u8 libraries on offer are
// archived or absent; the parser is fuzzed, since the signer also reads
// playlists to rewrite their URIs.
//
// Parsing is strict about structure (the header, a URI after every
// EXTINF and EXT-X-STREAM-INF, numeric attributes) and ignores tags it
// does not model, as RFC 8216 §4.1 asks of clients.
package m3u8

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxSize bounds a playlist this package parses.
const MaxSize = 4 << 20

// Variant is one EXT-X-STREAM-INF entry of a master playlist.
type Variant struct {
	URI              string
	Bandwidth        int64 // peak bit rate, bits/s
	AverageBandwidth int64 // 0: absent
	Codecs           string
}

// Master is a master (multivariant) playlist.
type Master struct {
	Version             int
	IndependentSegments bool
	Variants            []Variant
}

// Segment is one media segment.
type Segment struct {
	Duration float64 // seconds
	URI      string
}

// Media is a media playlist.
type Media struct {
	Version             int
	TargetDuration      int
	MediaSequence       int
	PlaylistType        string // "VOD", "EVENT" or ""
	IndependentSegments bool
	MapURI              string // EXT-X-MAP URI, the init segment; "" if none
	Segments            []Segment
	EndList             bool
}

// Duration is the sum of the segment durations.
func (m *Media) Duration() float64 {
	var d float64
	for _, s := range m.Segments {
		d += s.Duration
	}
	return d
}

// URIs lists every URI the playlist references: the init segment first.
func (m *Media) URIs() []string {
	var out []string
	if m.MapURI != "" {
		out = append(out, m.MapURI)
	}
	for _, s := range m.Segments {
		out = append(out, s.URI)
	}
	return out
}

// ErrNotPlaylist means the input does not start with #EXTM3U.
var ErrNotPlaylist = errors.New("m3u8: not a playlist (no #EXTM3U)")

// lines yields the playlist's non-empty lines, trimmed, after checking the
// header.
func lines(b []byte) ([]string, error) {
	if len(b) > MaxSize {
		return nil, fmt.Errorf("m3u8: playlist larger than %d bytes", MaxSize)
	}
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")) // a BOM is tolerated
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), MaxSize)
	var out []string
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("m3u8: %w", err)
	}
	if len(out) == 0 || out[0] != "#EXTM3U" {
		return nil, ErrNotPlaylist
	}
	return out[1:], nil
}

// ParseMaster parses a master playlist.
func ParseMaster(b []byte) (*Master, error) {
	ls, err := lines(b)
	if err != nil {
		return nil, err
	}
	m := &Master{}
	var pending *Variant
	for i, l := range ls {
		switch {
		case strings.HasPrefix(l, "#EXT-X-VERSION:"):
			if m.Version, err = strconv.Atoi(l[len("#EXT-X-VERSION:"):]); err != nil {
				return nil, fmt.Errorf("m3u8: line %d: bad version", i+2)
			}
		case l == "#EXT-X-INDEPENDENT-SEGMENTS":
			m.IndependentSegments = true
		case strings.HasPrefix(l, "#EXT-X-STREAM-INF:"):
			if pending != nil {
				return nil, fmt.Errorf("m3u8: line %d: EXT-X-STREAM-INF without a URI", i+2)
			}
			attrs, err := parseAttributes(l[len("#EXT-X-STREAM-INF:"):])
			if err != nil {
				return nil, fmt.Errorf("m3u8: line %d: %w", i+2, err)
			}
			v := Variant{Codecs: attrs["CODECS"]}
			if v.Bandwidth, err = strconv.ParseInt(attrs["BANDWIDTH"], 10, 64); err != nil || v.Bandwidth <= 0 {
				return nil, fmt.Errorf("m3u8: line %d: BANDWIDTH is required and positive", i+2)
			}
			if s, ok := attrs["AVERAGE-BANDWIDTH"]; ok {
				if v.AverageBandwidth, err = strconv.ParseInt(s, 10, 64); err != nil || v.AverageBandwidth <= 0 {
					return nil, fmt.Errorf("m3u8: line %d: bad AVERAGE-BANDWIDTH", i+2)
				}
			}
			pending = &v
		case strings.HasPrefix(l, "#EXTINF"):
			return nil, fmt.Errorf("m3u8: line %d: a media segment in a master playlist", i+2)
		case strings.HasPrefix(l, "#"):
			// Comments and tags this package does not model.
		default:
			if pending == nil {
				return nil, fmt.Errorf("m3u8: line %d: URI %q without EXT-X-STREAM-INF", i+2, l)
			}
			pending.URI = l
			m.Variants = append(m.Variants, *pending)
			pending = nil
		}
	}
	if pending != nil {
		return nil, errors.New("m3u8: EXT-X-STREAM-INF at the end without a URI")
	}
	if len(m.Variants) == 0 {
		return nil, errors.New("m3u8: a master playlist without variants")
	}
	return m, nil
}

// ParseMedia parses a media playlist.
func ParseMedia(b []byte) (*Media, error) {
	ls, err := lines(b)
	if err != nil {
		return nil, err
	}
	m := &Media{}
	duration := -1.0
	for i, l := range ls {
		n := i + 2
		switch {
		case strings.HasPrefix(l, "#EXT-X-VERSION:"):
			if m.Version, err = strconv.Atoi(l[len("#EXT-X-VERSION:"):]); err != nil {
				return nil, fmt.Errorf("m3u8: line %d: bad version", n)
			}
		case strings.HasPrefix(l, "#EXT-X-TARGETDURATION:"):
			if m.TargetDuration, err = strconv.Atoi(l[len("#EXT-X-TARGETDURATION:"):]); err != nil || m.TargetDuration < 0 {
				return nil, fmt.Errorf("m3u8: line %d: bad target duration", n)
			}
		case strings.HasPrefix(l, "#EXT-X-MEDIA-SEQUENCE:"):
			if m.MediaSequence, err = strconv.Atoi(l[len("#EXT-X-MEDIA-SEQUENCE:"):]); err != nil || m.MediaSequence < 0 {
				return nil, fmt.Errorf("m3u8: line %d: bad media sequence", n)
			}
		case strings.HasPrefix(l, "#EXT-X-PLAYLIST-TYPE:"):
			m.PlaylistType = l[len("#EXT-X-PLAYLIST-TYPE:"):]
		case l == "#EXT-X-INDEPENDENT-SEGMENTS":
			m.IndependentSegments = true
		case strings.HasPrefix(l, "#EXT-X-MAP:"):
			attrs, err := parseAttributes(l[len("#EXT-X-MAP:"):])
			if err != nil || attrs["URI"] == "" {
				return nil, fmt.Errorf("m3u8: line %d: EXT-X-MAP needs a URI", n)
			}
			m.MapURI = attrs["URI"]
		case strings.HasPrefix(l, "#EXTINF:"):
			if duration >= 0 {
				return nil, fmt.Errorf("m3u8: line %d: EXTINF without a URI", n)
			}
			d, _, _ := strings.Cut(l[len("#EXTINF:"):], ",")
			if duration, err = strconv.ParseFloat(d, 64); err != nil || duration < 0 || duration > 1e6 {
				return nil, fmt.Errorf("m3u8: line %d: bad segment duration", n)
			}
		case l == "#EXT-X-ENDLIST":
			m.EndList = true
		case strings.HasPrefix(l, "#EXT-X-STREAM-INF"):
			return nil, fmt.Errorf("m3u8: line %d: a variant in a media playlist", n)
		case strings.HasPrefix(l, "#"):
		default:
			if duration < 0 {
				return nil, fmt.Errorf("m3u8: line %d: URI %q without EXTINF", n, l)
			}
			m.Segments = append(m.Segments, Segment{Duration: duration, URI: l})
			duration = -1
		}
	}
	if duration >= 0 {
		return nil, errors.New("m3u8: EXTINF at the end without a URI")
	}
	return m, nil
}

// parseAttributes reads an attribute list (RFC 8216 §4.2): NAME=value
// pairs separated by commas, values quoted strings or bare tokens.
func parseAttributes(s string) (map[string]string, error) {
	out := map[string]string{}
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return nil, errors.New("malformed attribute list")
		}
		name := s[:eq]
		for i := 0; i < len(name); i++ {
			if c := name[i]; !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return nil, fmt.Errorf("bad attribute name %q", name)
			}
		}
		s = s[eq+1:]
		var value string
		if strings.HasPrefix(s, `"`) {
			end := strings.IndexByte(s[1:], '"')
			if end < 0 {
				return nil, errors.New("unterminated quoted string")
			}
			value, s = s[1:end+1], s[end+2:]
		} else {
			end := strings.IndexByte(s, ',')
			if end < 0 {
				end = len(s)
			}
			value, s = s[:end], s[end:]
			// A bare value is a number or an enumerated token; a quote
			// in it is a malformed quoted string.
			if strings.ContainsRune(value, '"') {
				return nil, errors.New("malformed attribute value")
			}
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("attribute %s twice", name)
		}
		out[name] = value
		if s != "" {
			if s[0] != ',' {
				return nil, errors.New("malformed attribute list")
			}
			s = s[1:]
		}
	}
	return out, nil
}

// Encode writes the master playlist.
func (m *Master) Encode() []byte {
	var b bytes.Buffer
	b.WriteString("#EXTM3U\n")
	if m.Version > 0 {
		fmt.Fprintf(&b, "#EXT-X-VERSION:%d\n", m.Version)
	}
	if m.IndependentSegments {
		b.WriteString("#EXT-X-INDEPENDENT-SEGMENTS\n")
	}
	for _, v := range m.Variants {
		fmt.Fprintf(&b, "#EXT-X-STREAM-INF:BANDWIDTH=%d", v.Bandwidth)
		if v.AverageBandwidth > 0 {
			fmt.Fprintf(&b, ",AVERAGE-BANDWIDTH=%d", v.AverageBandwidth)
		}
		if v.Codecs != "" {
			// RFC 8216 quoted strings have no escapes; the parser never
			// yields a value with a quote in it.
			b.WriteString(`,CODECS="` + v.Codecs + `"`)
		}
		b.WriteString("\n" + v.URI + "\n")
	}
	return b.Bytes()
}

// Encode writes the media playlist.
func (m *Media) Encode() []byte {
	var b bytes.Buffer
	b.WriteString("#EXTM3U\n")
	if m.Version > 0 {
		fmt.Fprintf(&b, "#EXT-X-VERSION:%d\n", m.Version)
	}
	fmt.Fprintf(&b, "#EXT-X-TARGETDURATION:%d\n", m.TargetDuration)
	fmt.Fprintf(&b, "#EXT-X-MEDIA-SEQUENCE:%d\n", m.MediaSequence)
	if m.PlaylistType != "" {
		fmt.Fprintf(&b, "#EXT-X-PLAYLIST-TYPE:%s\n", m.PlaylistType)
	}
	if m.IndependentSegments {
		b.WriteString("#EXT-X-INDEPENDENT-SEGMENTS\n")
	}
	if m.MapURI != "" {
		b.WriteString(`#EXT-X-MAP:URI="` + m.MapURI + "\"\n")
	}
	for _, s := range m.Segments {
		fmt.Fprintf(&b, "#EXTINF:%s,\n%s\n", strconv.FormatFloat(s.Duration, 'f', 6, 64), s.URI)
	}
	if m.EndList {
		b.WriteString("#EXT-X-ENDLIST\n")
	}
	return b.Bytes()
}
