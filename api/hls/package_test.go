package hls

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/playgate/playgate/api/hls/m3u8"
)

// tone makes a real audio file with ffmpeg.
func tone(t *testing.T, seconds int, name string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), name)
	b, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi",
		"-i", "sine=frequency=440:duration="+itoa(seconds), out).CombinedOutput()
	require.NoError(t, err, "ffmpeg is needed (apt-get install -y ffmpeg): %s", b)
	return out
}

func itoa(n int) string { return strconv.Itoa(n) }

// understatedMP3 makes a VBR MP3 with no Xing frame whose headers claim
// far less than it lasts: a second of loud noise, then silence, so the
// bit rate of its first frames, which ffprobe divides the size by, is
// the highest in the file.
func understatedMP3(t *testing.T, seconds int) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "understated.mp3")
	b, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error",
		"-f", "lavfi", "-i", "anoisesrc=d=2:c=white:a=0.5",
		"-f", "lavfi", "-i", "anullsrc=r=44100:cl=mono:d="+itoa(seconds-2),
		"-filter_complex", "[0:a]aresample=44100,aformat=channel_layouts=mono[n];[n][1:a]concat=n=2:v=0:a=1",
		"-c:a", "libmp3lame", "-q:a", "2", "-write_xing", "0", out).CombinedOutput()
	require.NoError(t, err, "%s", b)
	return out
}

func newPackager(t *testing.T, cfg Config) *Packager {
	t.Helper()
	if cfg.Renditions == nil {
		var err error
		cfg.Renditions, err = ParseRenditions("64k,128k,256k")
		require.NoError(t, err)
	}
	p, err := New(cfg)
	require.NoError(t, err)
	return p
}

func TestPackageThirtySecondTone(t *testing.T) {
	p := newPackager(t, Config{})
	input := tone(t, 30, "tone.mp3")
	var progress []int
	pkg, err := p.Package(context.Background(), input, strings.Repeat("ab", 32), func(pct int) { progress = append(progress, pct) })
	require.NoError(t, err)
	defer pkg.Remove()

	assert.Len(t, pkg.ID, 16)
	assert.InDelta(t, 30_000, pkg.DurationMS, 100)
	assert.NotEmpty(t, progress, "ffmpeg's progress is reported")
	for i := 1; i < len(progress); i++ {
		assert.GreaterOrEqual(t, progress[i], progress[i-1])
	}

	// Upload order: media files, then media playlists, then the master.
	last := pkg.Files[len(pkg.Files)-1]
	assert.Equal(t, "master.m3u8", last.Rel)
	firstPlaylist := len(pkg.Files)
	for i, f := range pkg.Files {
		if strings.HasSuffix(f.Rel, ".m3u8") {
			firstPlaylist = min(firstPlaylist, i)
		} else {
			assert.Less(t, i, firstPlaylist, "%s after a playlist", f.Rel)
		}
	}

	files := map[string][]byte{}
	for _, f := range pkg.Files {
		b, err := os.ReadFile(f.Local)
		require.NoError(t, err)
		files[f.Rel] = b
	}
	master, err := m3u8.ParseMaster(files["master.m3u8"])
	require.NoError(t, err)
	assert.Equal(t, 7, master.Version)
	assert.True(t, master.IndependentSegments)
	require.Len(t, master.Variants, 3)
	assert.Equal(t, "128k/index.m3u8", master.Variants[0].URI, "128k is listed first")
	for _, v := range master.Variants {
		assert.Equal(t, "mp4a.40.2", v.Codecs)
		media, err := m3u8.ParseMedia(files[v.URI])
		require.NoError(t, err, v.URI)
		assert.Equal(t, 7, media.Version)
		assert.Equal(t, "VOD", media.PlaylistType)
		assert.True(t, media.IndependentSegments)
		assert.True(t, media.EndList)
		assert.InDelta(t, 30, media.Duration(), 0.2, "durations sum to the track's length")
		dir := path.Dir(v.URI)
		var total int64
		for _, uri := range media.URIs() {
			assert.False(t, strings.Contains(uri, "/") || strings.Contains(uri, ":"), "URIs are relative: %s", uri)
			b, ok := files[dir+"/"+uri]
			require.True(t, ok, "%s resolves to a file of the package", uri)
			sum := sha256.Sum256(b)
			assert.Equal(t, hex.EncodeToString(sum[:16])+path.Ext(uri), uri, "the name is the hash of the bytes")
			if uri != media.MapURI {
				total += int64(len(b))
			}
		}
		// The master's bandwidths are the measured ones.
		avg := float64(total*8) / media.Duration()
		assert.InDelta(t, avg, v.AverageBandwidth, 1)
		assert.GreaterOrEqual(t, v.Bandwidth, v.AverageBandwidth, "peak >= average")
		for _, s := range media.Segments {
			assert.LessOrEqual(t, int(s.Duration+0.5), media.TargetDuration)
		}
	}
	assert.Less(t, master.Variants[1].Bandwidth, master.Variants[0].Bandwidth, "64k below 128k")
	assert.Greater(t, master.Variants[2].Bandwidth, master.Variants[0].Bandwidth, "256k above 128k")
}

// The same input and settings give the same bytes, so re-packaging
// changes nothing a CDN holds.
func TestPackageIsIdempotent(t *testing.T) {
	p := newPackager(t, Config{})
	input := tone(t, 8, "tone.flac")
	sum := strings.Repeat("cd", 32)
	read := func() map[string][]byte {
		pkg, err := p.Package(context.Background(), input, sum, nil)
		require.NoError(t, err)
		defer pkg.Remove()
		out := map[string][]byte{"id:" + pkg.ID: nil}
		for _, f := range pkg.Files {
			b, err := os.ReadFile(f.Local)
			require.NoError(t, err)
			out[f.Rel] = b
		}
		return out
	}
	assert.Equal(t, read(), read())

	other := newPackager(t, Config{Renditions: []Rendition{{Name: "96k", Bitrate: 96000}}})
	assert.NotEqual(t, p.ID(sum), other.ID(sum), "other settings, another package")
	assert.NotEqual(t, p.ID(sum), p.ID(strings.Repeat("ef", 32)), "another source, another package")
}

func TestPackageRejectsBadInput(t *testing.T) {
	p := newPackager(t, Config{MaxDuration: 20 * time.Second})
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.mp3")
	require.NoError(t, os.WriteFile(text, []byte("this is a text file renamed to .mp3\n"), 0o644))
	empty := filepath.Join(dir, "empty.mp3")
	require.NoError(t, os.WriteFile(empty, nil, 0o644))
	good, err := os.ReadFile(tone(t, 3, "x.mp3"))
	require.NoError(t, err)
	corrupt := filepath.Join(dir, "corrupt.mp3")
	require.NoError(t, os.WriteFile(corrupt, append(good[:200:200], bytes.Repeat([]byte{0x55}, 20000)...), 0o644))

	for name, input := range map[string]string{
		"text renamed .mp3":            text,
		"zero-length":                  empty,
		"corrupt":                      corrupt,
		"longer than HLS_MAX_DURATION": tone(t, 30, "long.mp3"),
		// Its headers claim ~11 s; it lasts 30.
		"longer than HLS_MAX_DURATION, claiming less": understatedMP3(t, 30),
	} {
		t.Run(name, func(t *testing.T) {
			pkg, err := p.Package(context.Background(), input, strings.Repeat("00", 32), nil)
			require.Error(t, err)
			assert.Nil(t, pkg)
			assert.ErrorIs(t, err, ErrBadInput)
		})
	}
}

// A track lasts what its audio decodes to, not what its headers claim.
func TestPackageMeasuresTheAudioNotItsHeaders(t *testing.T) {
	p := newPackager(t, Config{Renditions: []Rendition{{Name: "64k", Bitrate: 64000}}})
	whole, err := os.ReadFile(tone(t, 30, "whole.mp3"))
	require.NoError(t, err)
	truncated := filepath.Join(t.TempDir(), "truncated.mp3")
	require.NoError(t, os.WriteFile(truncated, whole[:len(whole)/4], 0o644))

	for _, c := range []struct {
		name        string
		input       string
		wantMS      int64
		claimsAbout float64 // seconds, what ffprobe reads from the headers
	}{
		// An upload cut short keeps the Xing frame of the whole file.
		{"truncated to a quarter", truncated, 7_500, 30},
		{"VBR without a Xing frame", understatedMP3(t, 30), 30_000, 11.5},
	} {
		t.Run(c.name, func(t *testing.T) {
			claimed, err := p.probe(context.Background(), c.input)
			require.NoError(t, err)
			require.InDelta(t, c.claimsAbout, claimed.duration.Seconds(), 1, "the case's headers lie as it says")

			pkg, err := p.Package(context.Background(), c.input, strings.Repeat("cd", 32), nil)
			require.NoError(t, err)
			defer pkg.Remove()
			assert.InDelta(t, c.wantMS, pkg.DurationMS, 300)
		})
	}
}

// ffmpeg stops decoding a second past HLS_MAX_DURATION, so audio longer
// than its headers claim costs no more than the limit to refuse.
func TestTranscodeStopsPastTheLimit(t *testing.T) {
	p := newPackager(t, Config{Renditions: []Rendition{{Name: "64k", Bitrate: 64000}}, MaxDuration: 10 * time.Second})
	dir := t.TempDir()
	require.NoError(t, p.transcode(context.Background(), understatedMP3(t, 30), dir, p.cfg.Renditions, 30*time.Second, nil))
	raw, err := os.ReadFile(filepath.Join(dir, "64k", "index.m3u8"))
	require.NoError(t, err)
	media, err := m3u8.ParseMedia(raw)
	require.NoError(t, err)
	assert.InDelta(t, 11, media.Duration(), 0.2, "decoded up to the limit and a second, not the 30 s there are")
}

// A job that runs out of time kills ffmpeg (its whole process group).
func TestPackageTimeoutKillsFFmpeg(t *testing.T) {
	p := newPackager(t, Config{Timeout: 300 * time.Millisecond})
	input := tone(t, 600, "ten-minutes.wav")
	start := time.Now()
	_, err := p.Package(context.Background(), input, strings.Repeat("11", 32), nil)
	require.Error(t, err)
	assert.NotErrorIs(t, err, ErrBadInput, "a timeout is worth retrying")
	assert.Less(t, time.Since(start), 10*time.Second)
	out, _ := exec.Command("pgrep", "-f", input).Output()
	assert.Empty(t, strings.TrimSpace(string(out)), "no ffmpeg left running")
}

func TestParseRenditions(t *testing.T) {
	r, err := ParseRenditions("64k, 128k,256k")
	require.NoError(t, err)
	assert.Equal(t, []Rendition{{Name: "64k", Bitrate: 64000}, {Name: "128k", Bitrate: 128000}, {Name: "256k", Bitrate: 256000}}, r)
	r, err = ParseRenditions("64k,flac")
	require.NoError(t, err)
	assert.Equal(t, []Rendition{{Name: "64k", Bitrate: 64000}, {Name: "flac", Lossless: true}}, r)
	for _, bad := range []string{"", "128", "128k,128k", "9999k", "fast", "flac", "flac,flac,64k", "FLAC,64k"} {
		_, err := ParseRenditions(bad)
		assert.Error(t, err, bad)
	}
}

// noise makes lossless audio that compresses like music does, not like
// a pure tone: pink noise at the given rate, in the format name's
// extension and sample format say.
func noise(t *testing.T, seconds int, rate int, sampleFormat, name string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), name)
	args := []string{"-hide_banner", "-loglevel", "error", "-f", "lavfi",
		"-i", "anoisesrc=c=pink:a=0.3:d=" + itoa(seconds) + ":r=" + itoa(rate), "-ac", "2"}
	if strings.HasSuffix(name, ".wav") {
		args = append(args, "-c:a", "pcm_"+sampleFormat+"le")
	} else {
		args = append(args, "-sample_fmt", sampleFormat)
	}
	b, err := exec.Command("ffmpeg", append(args, out)...).CombinedOutput()
	require.NoError(t, err, "%s", b)
	return out
}

// pcmMD5 decodes input with ffmpeg to raw samples of the given format
// and returns their MD5.
func pcmMD5(t *testing.T, input, pcm string) string {
	t.Helper()
	out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-i", input,
		"-map", "0:a:0", "-c:a", pcm, "-f", "md5", "-").Output()
	if err != nil {
		t.Fatalf("decoding %s: %s", input, stderrOf(err))
	}
	return strings.TrimSpace(string(out))
}

// The lossless tier is the source's samples, bit for bit, at its own
// rate and depth, and it is made from lossless uploads only.
func TestPackageLosslessTier(t *testing.T) {
	renditions, err := ParseRenditions("64k,128k,flac")
	require.NoError(t, err)
	p := newPackager(t, Config{Renditions: renditions})

	for _, c := range []struct {
		name    string
		input   string
		pcm     string // the decoded samples' format, to compare
		rate    string
		seconds float64
	}{
		// 12 s: ffmpeg 5.1 ends this FLAC rendition with an empty
		// segment, which the package must not keep.
		{"16-bit 44.1 kHz FLAC", noise(t, 12, 44100, "s16", "cd.flac"), "pcm_s16le", "44100", 12},
		{"24-bit 96 kHz WAV", noise(t, 8, 96000, "s24", "studio.wav"), "pcm_s24le", "96000", 8},
	} {
		t.Run(c.name, func(t *testing.T) {
			pkg, err := p.Package(context.Background(), c.input, strings.Repeat("ab", 32), nil)
			require.NoError(t, err)
			defer pkg.Remove()
			assert.InDelta(t, c.seconds*1000, pkg.DurationMS, 30, "no empty segment lengthens the track")

			files := map[string]string{}
			for _, f := range pkg.Files {
				files[f.Rel] = f.Local
			}
			assert.True(t, pkg.Lossless)
			master := readMaster(t, files[MasterPlaylist])
			require.Len(t, master.Variants, 2, "the master offers AAC only: listeners opt in to lossless")
			assert.Equal(t, "128k/index.m3u8", master.Variants[0].URI, "players still start with 128k")
			withLossless := readMaster(t, files[LosslessPlaylist])
			require.Len(t, withLossless.Variants, 3)
			lossless := withLossless.Variants[0]
			assert.Equal(t, "flac/index.m3u8", lossless.URI, "those who opt in start with it")
			assert.Equal(t, "fLaC", lossless.Codecs)
			assert.Equal(t, master.Variants, withLossless.Variants[1:], "the AAC variants follow, to fall back to")
			assert.Greater(t, lossless.AverageBandwidth, master.Variants[0].Bandwidth, "lossless costs more than 128k")
			assert.Equal(t, MasterPlaylist, pkg.Files[len(pkg.Files)-1].Rel, "the masters come last")
			assert.Equal(t, LosslessPlaylist, pkg.Files[len(pkg.Files)-2].Rel)

			playlist := files["flac/index.m3u8"]
			raw, err := os.ReadFile(playlist)
			require.NoError(t, err)
			media, err := m3u8.ParseMedia(raw)
			require.NoError(t, err)
			// ffmpeg lists the last FLAC frame at its whole block size.
			assert.InDelta(t, c.seconds, media.Duration(), 0.1)
			for _, s := range media.Segments {
				b, err := os.ReadFile(files["flac/"+s.URI])
				require.NoError(t, err)
				assert.True(t, hasBox(b, "moof"), "%s holds media", s.URI)
			}

			assert.Equal(t, pcmMD5(t, c.input, c.pcm), pcmMD5(t, playlist, c.pcm), "the same samples as the upload")
			out, err := exec.Command("ffprobe", "-v", "error", "-show_entries", "stream=codec_name,sample_rate",
				"-of", "default=noprint_wrappers=1", playlist).Output()
			require.NoError(t, err)
			assert.Contains(t, string(out), "codec_name=flac")
			assert.Contains(t, string(out), "sample_rate="+c.rate)
		})
	}

	t.Run("a lossy upload gets no lossless tier", func(t *testing.T) {
		pkg, err := p.Package(context.Background(), tone(t, 8, "lossy.mp3"), strings.Repeat("ab", 32), nil)
		require.NoError(t, err)
		defer pkg.Remove()
		for _, f := range pkg.Files {
			assert.False(t, strings.HasPrefix(f.Rel, "flac/") || f.Rel == LosslessPlaylist, f.Rel)
		}
		assert.False(t, pkg.Lossless)
		assert.Len(t, readMaster(t, pkg.Files[len(pkg.Files)-1].Local).Variants, 2)
	})
}

func readMaster(t *testing.T, local string) *m3u8.Master {
	t.Helper()
	raw, err := os.ReadFile(local)
	require.NoError(t, err)
	master, err := m3u8.ParseMaster(raw)
	require.NoError(t, err)
	return master
}

func TestHasBox(t *testing.T) {
	box := func(typ string, body int) []byte {
		b := make([]byte, 8+body)
		b[3] = byte(8 + body)
		copy(b[4:], typ)
		return b
	}
	styp := box("styp", 16)
	moof := box("moof", 8)
	large := append([]byte{0, 0, 0, 1, 'm', 'd', 'a', 't', 0, 0, 0, 0, 0, 0, 0, 16}, make([]byte, 0)...)
	for _, c := range []struct {
		name string
		b    []byte
		want bool
	}{
		{"ffmpeg's empty segment: a styp alone", styp, false},
		{"styp, then moof", append(slices.Clone(styp), moof...), true},
		{"moof first", moof, true},
		{"a 64-bit size before moof", append(slices.Clone(large), moof...), true},
		{"a box that runs to the end hides what follows", append([]byte{0, 0, 0, 0, 'm', 'd', 'a', 't'}, moof...), false},
		{"a size past the end", append([]byte{0, 0, 1, 0, 's', 't', 'y', 'p'}, moof...), false},
		{"a size below the header", append([]byte{0, 0, 0, 4, 's', 't', 'y', 'p'}, moof...), false},
		{"a truncated 64-bit size", []byte{0, 0, 0, 1, 'm', 'd', 'a', 't', 0}, false},
		{"empty", nil, false},
	} {
		assert.Equal(t, c.want, hasBox(c.b, "moof"), c.name)
	}
}

func FuzzHasBox(f *testing.F) {
	f.Add([]byte("\x00\x00\x00\x18stypmsdh\x00\x00\x00\x00msdhmsix"))
	f.Add([]byte("\x00\x00\x00\x01mdat\x00\x00\x00\x00\x00\x00\x00\x10\x00\x00\x00\x08moof"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if hasBox(b, "moof") {
			assert.Contains(t, string(b), "moof", "a box found is in the bytes")
		}
	})
}
