package catalog

import "bytes"

// Format is an audio container the catalogue accepts.
type Format struct {
	Ext         string // file extension of the stored original
	ContentType string // served by the origin for that extension (SPEC §5.3)
}

// The accepted formats.
var (
	FormatMP3  = Format{"mp3", "audio/mpeg"}
	FormatFLAC = Format{"flac", "audio/flac"}
	FormatWAV  = Format{"wav", "audio/wav"}
	FormatOGG  = Format{"ogg", "audio/ogg"}
	FormatOpus = Format{"opus", "audio/ogg"}
	FormatM4A  = Format{"m4a", "audio/mp4"}
	FormatAAC  = Format{"aac", "audio/aac"}
)

// Formats lists the accepted formats, in a fixed order.
var Formats = []Format{FormatMP3, FormatFLAC, FormatWAV, FormatOGG, FormatOpus, FormatM4A, FormatAAC}

// SniffLen is how many leading bytes Sniff wants to see after any ID3v2
// tag (SniffWant).
const SniffLen = 512

// MaxSniffLen bounds what Sniff is given to look past an ID3v2 tag: a tag
// with a large cover picture is assumed to front an MP3, as nearly all
// tagged files do.
const MaxSniffLen = 1 << 20

// SniffWant is how many leading bytes Sniff wants, given the first
// SniffLen: more than SniffLen when they begin an ID3v2 tag, whose end is
// where the audio, and what it is, begins.
func SniffWant(head []byte) int {
	if n := id3Len(head); n > 0 {
		return min(n+SniffLen, MaxSniffLen)
	}
	return SniffLen
}

// id3Len is the length of the ID3v2 tag b begins with (ID3v2.4 §3: a
// 10-byte header, a body whose size is a 28-bit synchsafe integer, and a
// 10-byte footer when the flags say so), or 0 when b does not begin one.
func id3Len(b []byte) int {
	if len(b) < 10 || !bytes.HasPrefix(b, []byte("ID3")) || b[3] < 2 || b[3] > 4 || b[4] == 0xFF {
		return 0
	}
	if (b[6]|b[7]|b[8]|b[9])&0x80 != 0 {
		return 0
	}
	n := 10 + (int(b[6])<<21 | int(b[7])<<14 | int(b[8])<<7 | int(b[9]))
	if b[5]&0x10 != 0 {
		n += 10
	}
	return n
}

// Sniff identifies an audio file from its first bytes (SniffWant says how
// many) by magic numbers, never trusting a client's Content-Type or file
// name. It recognises MP3
// (ID3 tag or MPEG audio frame), FLAC, WAV, Ogg (Vorbis, Opus or FLAC
// inside), MP4/M4A and ADTS AAC.
func Sniff(b []byte) (Format, bool) {
	switch {
	case bytes.HasPrefix(b, []byte("fLaC")):
		return FormatFLAC, true
	case bytes.HasPrefix(b, []byte("ID3")) && len(b) >= 10 && b[3] >= 2 && b[3] <= 4:
		// An ID3v2 tag (version 2..4) fronts nearly every MP3 file, and
		// some AAC (ffmpeg's ADTS muxer writes one) and FLAC files: what
		// follows the tag says which. When that is not in b, or not
		// recognised, it is MP3.
		if n := id3Len(b); n > 0 && n < len(b) && !bytes.HasPrefix(b[n:], []byte("ID3")) {
			if f, ok := Sniff(b[n:]); ok {
				return f, true
			}
		}
		return FormatMP3, true
	case len(b) >= 12 && bytes.Equal(b[:4], []byte("RIFF")) && bytes.Equal(b[8:12], []byte("WAVE")):
		return FormatWAV, true
	case bytes.HasPrefix(b, []byte("OggS")):
		// The first page's packet names the codec; video (Theora) is not
		// audio.
		switch {
		case bytes.Contains(b, []byte("OpusHead")):
			return FormatOpus, true
		case bytes.Contains(b, []byte("\x01vorbis")), bytes.Contains(b, []byte("\x7fFLAC")):
			return FormatOGG, true
		}
	case len(b) >= 12 && bytes.Equal(b[4:8], []byte("ftyp")):
		if isAudioMP4Brand(b[8:12]) {
			return FormatM4A, true
		}
	case len(b) >= 4 && b[0] == 0xFF && b[1]&0xF6 == 0xF0:
		// ADTS: 12-bit sync, layer 00, then a valid sampling index.
		if (b[2]>>2)&0x0F < 13 {
			return FormatAAC, true
		}
	case len(b) >= 4 && b[0] == 0xFF && b[1]&0xE0 == 0xE0:
		if isMPEGAudioFrame(b) {
			return FormatMP3, true
		}
	}
	return Format{}, false
}

// isMPEGAudioFrame checks an MPEG-1/2/2.5 audio frame header: version not
// reserved, layer not reserved, bitrate index neither free nor bad,
// sampling rate not reserved.
func isMPEGAudioFrame(b []byte) bool {
	version := (b[1] >> 3) & 0x03
	layer := (b[1] >> 1) & 0x03
	bitrate := b[2] >> 4
	rate := (b[2] >> 2) & 0x03
	return version != 1 && layer != 0 && bitrate != 0 && bitrate != 0x0F && rate != 0x03
}

// isAudioMP4Brand accepts Apple's audio brands and the generic ISO brands
// that audio-only MP4 files carry; the packager maps the first audio
// stream, so a video track in a generic file is ignored, not served.
func isAudioMP4Brand(brand []byte) bool {
	switch string(brand) {
	case "M4A ", "M4B ", "M4P ", "mp41", "mp42", "isom", "iso2", "iso5", "iso6", "dash", "3gp4", "3gp5", "3gp6":
		return true
	}
	return false
}
