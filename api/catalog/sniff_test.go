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
		{"ID3v2.4, then an mp3 frame", id3(4, 0, 20) + "\xFF\xFB\x90\x64", FormatMP3, true},
		{"ID3v2.3, then adts aac", id3(3, 0, 20) + "\xFF\xF1\x50\x80", FormatAAC, true},
		{"ID3v2.4 with a footer, then flac", id3(4, 0x10, 20) + "3DI\x04\x00\x10\x00\x00\x00\x14fLaC", FormatFLAC, true},
		{"ID3v2.4 whose flags announce a footer it lacks", id3(4, 0x10, 20) + "fLaC", FormatMP3, true},
		{"ID3, then what is not audio", id3(4, 0, 20) + "hello", FormatMP3, true},
		{"ID3, then another tag", id3(4, 0, 20) + id3(4, 0, 20) + "fLaC", FormatMP3, true},
		{"ID3 past what was read", id3(4, 0, 300)[:100], FormatMP3, true},
		{"ID3 with a size that is not synchsafe", "ID3\x04\x00\x00\x00\x00\x00\x80\xFF\xF1\x50\x80", FormatMP3, true},
		{"ID3 of an unknown version", id3(5, 0, 20) + "\xFF\xF1\x50\x80", Format{}, false},
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

// id3 is an ID3v2 tag of the given version and flags with a body of size
// zero bytes (a tag's padding).
func id3(version, flags byte, size int) string {
	h := []byte{'I', 'D', '3', version, 0, flags, byte(size >> 21 & 0x7F), byte(size >> 14 & 0x7F), byte(size >> 7 & 0x7F), byte(size & 0x7F)}
	return string(h) + string(make([]byte, size))
}

func TestSniffWant(t *testing.T) {
	for _, c := range []struct {
		name string
		head string
		want int
	}{
		{"no tag", "fLaC\x00\x00\x00\x22", SniffLen},
		{"short", "ID3", SniffLen},
		{"a tag of 20 bytes", id3(4, 0, 20)[:10], 30 + SniffLen},
		{"with a footer", id3(4, 0x10, 20)[:10], 40 + SniffLen},
		{"a 200 KB cover", id3(3, 0, 200_000)[:10], 200_010 + SniffLen},
		{"the largest tag there can be", "ID3\x04\x00\x00\x7F\x7F\x7F\x7F", MaxSniffLen},
		{"not synchsafe", "ID3\x04\x00\x00\x00\x00\x00\x80", SniffLen},
		{"version 2.5", id3(5, 0, 20)[:10], SniffLen},
	} {
		t.Run(c.name, func(t *testing.T) {
			assert.Equal(t, c.want, SniffWant([]byte(c.head)))
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
		{"tagged.aac", []string{"-c:a", "aac", "-write_id3v2", "1", "-metadata", "title=Tagged", "-f", "adts"}, FormatAAC},
		{"tagged.mp3", []string{"-c:a", "libmp3lame", "-metadata", "title=Tagged"}, FormatMP3},
	} {
		t.Run(c.file, func(t *testing.T) {
			out := filepath.Join(dir, c.file)
			args := append([]string{"-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=1"}, c.args...)
			b, err := exec.Command(ffmpeg, append(args, out)...).CombinedOutput()
			require.NoError(t, err, string(b))
			data, err := os.ReadFile(out)
			require.NoError(t, err)
			head := data[:min(len(data), SniffLen)]
			got, ok := Sniff(data[:min(len(data), SniffWant(head))])
			assert.True(t, ok)
			assert.Equal(t, c.want, got)
		})
	}
}

func FuzzSniff(f *testing.F) {
	f.Add([]byte("fLaC"))
	f.Add([]byte("\xFF\xFB\x90\x64"))
	f.Add([]byte("OggS"))
	f.Add([]byte(id3(4, 0x10, 20) + "3DI\x04\x00\x10\x00\x00\x00\x14\xFF\xF1\x50\x80"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if want := SniffWant(b); want < SniffLen || want > MaxSniffLen {
			t.Fatalf("SniffWant = %d", want)
		}
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
