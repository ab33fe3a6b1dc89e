package catalog

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSniffMagic(t *testing.T) {
	for _, c := range []struct {
		name   string
		head   string
		want   Format
		wantOK bool
	}{
		{"flac", "fLaC\x00\x00\x00\x22", FormatFLAC, true},
		{"mp3 with ID3v2.4", "ID3\x04\x00\x00\x00\x00\x01\x00", FormatMP3, true},
		{"mp3 frame, MPEG-1 layer III 128k 44.1k", "\xFF\xFB\x90\x64", FormatMP3, true},
		{"mp3 frame with bad bitrate", "\xFF\xFB\xF0\x64", Format{}, false},
		{"wav", "RIFF\x24\x08\x00\x00WAVEfmt ", FormatWAV, true},
		{"riff but avi", "RIFF\x24\x08\x00\x00AVI LIST", Format{}, false},
		{"ogg opus", "OggS\x00\x02" + string(make([]byte, 22)) + "OpusHead", FormatOpus, true},
		{"ogg vorbis", "OggS\x00\x02" + string(make([]byte, 22)) + "\x01vorbis", FormatOGG, true},
		{"ogg theora", "OggS\x00\x02" + string(make([]byte, 22)) + "\x80theora", Format{}, false},
		{"m4a", "\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00", FormatM4A, true},
		{"quicktime movie", "\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00", Format{}, false},
		{"adts aac", "\xFF\xF1\x50\x80", FormatAAC, true},
		{"text renamed .mp3", "hello, this is not audio", Format{}, false},
		{"empty", "", Format{}, false},
		{"png", "\x89PNG\r\n\x1a\n", Format{}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, ok := Sniff([]byte(c.head))
			assert.Equal(t, c.wantOK, ok)
			assert.Equal(t, c.want, got)
		})
	}
}

// Real files from ffmpeg, one per accepted format, are recognised.
func TestSniffRealFiles(t *testing.T) {
	ffmpeg, err := exec.LookPath("ffmpeg")
	require.NoError(t, err, "ffmpeg is needed: apt-get install -y ffmpeg (or make deps)")
	dir := t.TempDir()
	for _, c := range []struct {
		file string
		args []string
		want Format
	}{
		{"a.mp3", []string{"-c:a", "libmp3lame"}, FormatMP3},
		{"a.flac", nil, FormatFLAC},
		{"a.wav", nil, FormatWAV},
		{"a.ogg", []string{"-c:a", "libvorbis"}, FormatOGG},
		{"a.opus", []string{"-c:a", "libopus"}, FormatOpus},
		{"a.m4a", []string{"-c:a", "aac"}, FormatM4A},
		{"a.aac", []string{"-c:a", "aac", "-f", "adts"}, FormatAAC},
	} {
		t.Run(c.file, func(t *testing.T) {
			out := filepath.Join(dir, c.file)
			args := append([]string{"-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=1"}, c.args...)
			b, err := exec.Command(ffmpeg, append(args, out)...).CombinedOutput()
			require.NoError(t, err, string(b))
			data, err := os.ReadFile(out)
			require.NoError(t, err)
			got, ok := Sniff(data[:min(len(data), SniffLen)])
			assert.True(t, ok)
			assert.Equal(t, c.want, got)
		})
	}
}

func FuzzSniff(f *testing.F) {
	f.Add([]byte("fLaC"))
	f.Add([]byte("\xFF\xFB\x90\x64"))
	f.Add([]byte("OggS"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := Sniff(b)
		if ok {
			assert.NotEmpty(t, got.Ext)
			assert.NotEmpty(t, got.ContentType)
		} else {
			assert.Equal(t, Format{}, got)
		}
	})
}

func TestShareTokenSyntax(t *testing.T) {
	tok, hash := NewShareToken()
	assert.True(t, ValidShareTokenSyntax(tok))
	assert.Equal(t, HashShareToken(tok), hash)
	for _, bad := range []string{"", "short", tok + "A", "AAAAAAAAAAAAAAAAAAAAA=", "AAAAAAAAAAAAAAAAAAAA+/"} {
		assert.False(t, ValidShareTokenSyntax(bad), bad)
	}
}

func FuzzShareTokenSyntax(f *testing.F) {
	tok, _ := NewShareToken()
	f.Add(tok)
	f.Add("AAAAAAAAAAAAAAAAAAAAAB")
	f.Fuzz(func(t *testing.T, s string) {
		if ValidShareTokenSyntax(s) {
			assert.Len(t, s, ShareTokenLen)
			assert.NotContains(t, s, "=")
		}
	})
}
