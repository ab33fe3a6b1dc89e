// Package hls turns an uploaded original into a content-addressed,
// audio-only HLS package (SPEC §6): one ffmpeg run makes fMP4 (CMAF)
// AAC-LC renditions, then Go names every init and segment file after the
// hash of its bytes, rewrites the media playlists to match, and writes
// the master playlist itself with measured bandwidths.
//
// Identical input and settings give identical bytes (ffmpeg runs with
// bitexact flags), so re-packaging is idempotent, and the package id
// derives from the source hash and the settings, so a new package never
// overwrites what a CDN has cached.
package hls

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/playgate/playgate/api/hls/m3u8"
)

// formatVersion changes whenever the packager's output changes for the
// same input, so that a new package id is used.
const formatVersion = "playgate-hls-1"

// ErrBadInput marks failures caused by the input itself (not audio, too
// long, corrupt): retrying cannot help.
var ErrBadInput = errors.New("hls: unusable input")

// Rendition is one AAC-LC variant.
type Rendition struct {
	Name    string // directory and label, e.g. "128k"
	Bitrate int    // bits per second
}

// ParseRenditions reads HLS_RENDITIONS, e.g. "64k,128k,256k".
func ParseRenditions(s string) ([]Rendition, error) {
	var out []Rendition
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		kbps, ok := strings.CutSuffix(part, "k")
		n, err := strconv.Atoi(kbps)
		if !ok || err != nil || n < 16 || n > 512 {
			return nil, fmt.Errorf("HLS_RENDITIONS: %q is not an AAC bit rate like 128k (16k to 512k)", part)
		}
		if slices.ContainsFunc(out, func(r Rendition) bool { return r.Name == part }) {
			return nil, fmt.Errorf("HLS_RENDITIONS: %s is listed twice", part)
		}
		out = append(out, Rendition{Name: part, Bitrate: n * 1000})
	}
	if len(out) == 0 {
		return nil, errors.New("HLS_RENDITIONS is empty")
	}
	return out, nil
}

// Config is how packages are made.
type Config struct {
	FFmpeg, FFprobe string        // executables; "" finds them on PATH
	Renditions      []Rendition   // at least one
	SegmentSeconds  int           // target segment length, default 6
	MaxDuration     time.Duration // longer audio is refused, default 2h
	Timeout         time.Duration // bound on one ffmpeg run, default 30m
}

// Packager makes packages. It is safe for concurrent use.
type Packager struct {
	cfg Config
}

// New validates cfg and finds the executables.
func New(cfg Config) (*Packager, error) {
	if cfg.SegmentSeconds == 0 {
		cfg.SegmentSeconds = 6
	}
	if cfg.MaxDuration == 0 {
		cfg.MaxDuration = 2 * time.Hour
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Minute
	}
	if len(cfg.Renditions) == 0 {
		return nil, errors.New("hls: at least one rendition is required")
	}
	var err error
	if cfg.FFmpeg, err = findTool(cfg.FFmpeg, "ffmpeg"); err != nil {
		return nil, err
	}
	if cfg.FFprobe, err = findTool(cfg.FFprobe, "ffprobe"); err != nil {
		return nil, err
	}
	return &Packager{cfg: cfg}, nil
}

func findTool(given, name string) (string, error) {
	if given != "" {
		return given, nil
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("hls: %s not found (apt-get install -y ffmpeg, or set FFMPEG_PATH): %w", name, err)
	}
	return p, nil
}

// File is one file of a package, in a local directory until uploaded.
type File struct {
	Rel         string // path within the package, e.g. "128k/3f2a….m4s"
	Local       string // where it is on disk
	ContentType string
}

// Package is a finished package on local disk. Files are in upload order:
// init and segment files, then media playlists, then the master, so that
// no playlist is ever visible before what it references.
type Package struct {
	ID         string
	DurationMS int64
	Files      []File
	dir        string
}

// Remove deletes the package's local files.
func (p *Package) Remove() error { return os.RemoveAll(p.dir) }

// ID derives the package id from the source hash and the settings.
func (p *Packager) ID(sourceSHA256 string) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s|%s|%d", formatVersion, sourceSHA256, p.cfg.SegmentSeconds)
	for _, r := range p.cfg.Renditions {
		fmt.Fprintf(h, "|%s:%d", r.Name, r.Bitrate)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// Package packages the audio file at input. progress, if not nil, is
// called with the percentage done as ffmpeg reports it. Failures caused
// by the input wrap ErrBadInput.
func (p *Packager) Package(ctx context.Context, input, sourceSHA256 string, progress func(percent int)) (*Package, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	duration, err := p.probe(ctx, input)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "playgate-hls-")
	if err != nil {
		return nil, err
	}
	pkg := &Package{ID: p.ID(sourceSHA256), dir: dir}
	if err := p.transcode(ctx, input, dir, duration, progress); err != nil {
		pkg.Remove()
		return nil, err
	}
	if err := p.assemble(pkg); err != nil {
		pkg.Remove()
		return nil, err
	}
	if d := time.Duration(pkg.DurationMS) * time.Millisecond; d > p.cfg.MaxDuration {
		pkg.Remove()
		return nil, fmt.Errorf("%w: the audio is longer than HLS_MAX_DURATION (%s)", ErrBadInput, p.cfg.MaxDuration)
	}
	return pkg, nil
}

// probe asks ffprobe for the duration of the first audio stream, which
// also proves there is one. The duration is what the file's headers
// claim (an MP3's Xing frame count, or its size over its first frames'
// bit rate), good enough for progress and for refusing a file that
// claims to be too long before spending ffmpeg on it. What a track
// lasts is measured on the packaged audio instead: a truncated upload
// claims its whole length, and a VBR MP3 without a Xing frame can claim
// a third of it.
func (p *Packager) probe(ctx context.Context, input string) (time.Duration, error) {
	out, err := exec.CommandContext(ctx, p.cfg.FFprobe, "-v", "error", "-select_streams", "a:0",
		"-show_entries", "format=duration:stream=codec_type", "-of", "default=noprint_wrappers=1", input).Output()
	if ctx.Err() != nil {
		return 0, fmt.Errorf("hls: probing timed out: %w", ctx.Err())
	}
	if err != nil {
		return 0, fmt.Errorf("%w: not a readable audio file (%s)", ErrBadInput, stderrOf(err))
	}
	var seconds float64
	audio := false
	for line := range strings.SplitSeq(string(out), "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), "=")
		switch k {
		case "codec_type":
			audio = audio || v == "audio"
		case "duration":
			seconds, _ = strconv.ParseFloat(v, 64)
		}
	}
	switch {
	case !audio:
		return 0, fmt.Errorf("%w: no audio stream", ErrBadInput)
	case seconds <= 0 || math.IsNaN(seconds):
		return 0, fmt.Errorf("%w: the audio has no duration", ErrBadInput)
	case time.Duration(seconds*float64(time.Second)) > p.cfg.MaxDuration:
		return 0, fmt.Errorf("%w: %.0f s is longer than HLS_MAX_DURATION (%s)", ErrBadInput, seconds, p.cfg.MaxDuration)
	}
	return time.Duration(seconds * float64(time.Second)), nil
}

func stderrOf(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return strings.TrimSpace(lastLine(string(ee.Stderr)))
	}
	return err.Error()
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// transcode runs one ffmpeg for every rendition (SPEC §6's tested
// command, plus bitexact flags for reproducible bytes and -progress).
func (p *Packager) transcode(ctx context.Context, input, dir string, duration time.Duration, progress func(int)) error {
	// -t stops decoding just past HLS_MAX_DURATION, so audio longer than
	// its headers claim costs a bounded run and is then refused.
	limit := strconv.FormatFloat((p.cfg.MaxDuration + time.Second).Seconds(), 'f', 3, 64)
	args := []string{"-hide_banner", "-nostdin", "-loglevel", "error", "-nostats", "-progress", "pipe:1",
		"-t", limit, "-i", input, "-vn", "-sn", "-dn", "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:a", "+bitexact"}
	var streamMap []string
	for i := range p.cfg.Renditions {
		args = append(args, "-map", "0:a:0")
		streamMap = append(streamMap, fmt.Sprintf("a:%d,name:%s", i, p.cfg.Renditions[i].Name))
	}
	args = append(args, "-c:a", "aac", "-profile:a", "aac_low", "-ar", "44100", "-ac", "2")
	for i, r := range p.cfg.Renditions {
		args = append(args, fmt.Sprintf("-b:a:%d", i), strconv.Itoa(r.Bitrate))
	}
	args = append(args, "-f", "hls", "-hls_time", strconv.Itoa(p.cfg.SegmentSeconds), "-hls_playlist_type", "vod",
		"-hls_flags", "independent_segments", "-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4",
		"-hls_segment_filename", filepath.Join(dir, "%v", "seg_%05d.m4s"),
		"-var_stream_map", strings.Join(streamMap, " "), filepath.Join(dir, "%v", "index.m3u8"))

	cmd := exec.CommandContext(ctx, p.cfg.FFmpeg, args...)
	// ffmpeg runs in its own process group, killed whole on timeout or
	// cancellation, so no encoder outlives its job.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stderr strings.Builder
	cmd.Stderr = &limitedWriter{w: &stderr, n: 8 << 10}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("hls: cannot start ffmpeg: %w", err)
	}
	readProgress(stdout, duration, progress)
	err = cmd.Wait()
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("hls: ffmpeg did not finish in time: %w", ctx.Err())
	case err != nil:
		return fmt.Errorf("%w: ffmpeg failed: %s", ErrBadInput, lastLine(stderr.String()))
	}
	return nil
}

// readProgress turns ffmpeg's -progress key=value stream into percents.
func readProgress(r io.Reader, duration time.Duration, progress func(int)) {
	sc := bufio.NewScanner(r)
	last := -1
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "out_time_us=")
		if !ok || progress == nil {
			continue
		}
		us, err := strconv.ParseInt(v, 10, 64)
		if err != nil || duration <= 0 {
			continue
		}
		pct := int(min(99, max(0, time.Duration(us)*time.Microsecond*100/duration)))
		if pct != last {
			last = pct
			progress(pct)
		}
	}
	_, _ = io.Copy(io.Discard, r)
}

type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		l.n -= k
		_, _ = l.w.Write(p[:k])
	}
	return len(p), nil
}

// assemble content-addresses ffmpeg's output, writes the playlists and
// sets the package's duration: the longest rendition's, what players
// will show.
func (p *Packager) assemble(pkg *Package) error {
	var media []File
	master := &m3u8.Master{Version: 7, IndependentSegments: true}
	for _, r := range p.cfg.Renditions {
		rdir := filepath.Join(pkg.dir, r.Name)
		raw, err := os.ReadFile(filepath.Join(rdir, "index.m3u8"))
		if err != nil {
			return fmt.Errorf("%w: ffmpeg wrote no playlist for %s", ErrBadInput, r.Name)
		}
		pl, err := m3u8.ParseMedia(raw)
		if err != nil {
			return fmt.Errorf("hls: ffmpeg's playlist for %s: %w", r.Name, err)
		}
		if len(pl.Segments) == 0 || pl.MapURI == "" {
			return fmt.Errorf("%w: no segments for %s", ErrBadInput, r.Name)
		}
		out := &m3u8.Media{Version: 7, PlaylistType: "VOD", IndependentSegments: true, EndList: true}
		initName, _, err := contentAddress(rdir, pl.MapURI)
		if err != nil {
			return err
		}
		out.MapURI = initName
		pkg.Files = append(pkg.Files, file(pkg.dir, r.Name, initName))
		var total int64
		var peak float64
		for _, s := range pl.Segments {
			name, size, err := contentAddress(rdir, s.URI)
			if err != nil {
				return err
			}
			pkg.Files = append(pkg.Files, file(pkg.dir, r.Name, name))
			out.Segments = append(out.Segments, m3u8.Segment{Duration: s.Duration, URI: name})
			total += size
			// RFC 8216 §4.3.4.2: BANDWIDTH is the peak segment bit rate.
			// A last segment of a few milliseconds is mostly box headers,
			// and its "rate" would mislead every player's adaptation, so
			// segments shorter than a second do not count.
			if s.Duration >= 1 {
				peak = max(peak, float64(size*8)/s.Duration)
			}
			out.TargetDuration = max(out.TargetDuration, int(math.Round(s.Duration)))
		}
		d := out.Duration()
		pkg.DurationMS = max(pkg.DurationMS, int64(math.Round(d*1000)))
		if peak == 0 && d > 0 { // nothing a second long: the average is all there is
			peak = float64(total*8) / d
		}
		if err := os.WriteFile(filepath.Join(rdir, "index.m3u8"), out.Encode(), 0o644); err != nil {
			return err
		}
		media = append(media, file(pkg.dir, r.Name, "index.m3u8"))
		master.Variants = append(master.Variants, m3u8.Variant{
			URI:              r.Name + "/index.m3u8",
			Bandwidth:        int64(math.Ceil(peak)),
			AverageBandwidth: int64(math.Ceil(float64(total*8) / d)),
			Codecs:           "mp4a.40.2",
		})
	}
	// Players start with the first variant: the 128k one when there is.
	slices.SortStableFunc(master.Variants, func(a, b m3u8.Variant) int {
		return boolInt(!strings.HasPrefix(a.URI, "128k/")) - boolInt(!strings.HasPrefix(b.URI, "128k/"))
	})
	if err := os.WriteFile(filepath.Join(pkg.dir, "master.m3u8"), master.Encode(), 0o644); err != nil {
		return err
	}
	pkg.Files = append(pkg.Files, media...)
	pkg.Files = append(pkg.Files, File{Rel: "master.m3u8", Local: filepath.Join(pkg.dir, "master.m3u8"), ContentType: "application/vnd.apple.mpegurl"})
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func file(dir, rendition, name string) File {
	ct := "video/iso.segment"
	switch path.Ext(name) {
	case ".mp4":
		ct = "audio/mp4"
	case ".m3u8":
		ct = "application/vnd.apple.mpegurl"
	}
	return File{Rel: rendition + "/" + name, Local: filepath.Join(dir, rendition, name), ContentType: ct}
}

// contentAddress renames a file in dir to the hex SHA-256 of its bytes
// (the first 16 bytes, 32 hex characters) with its extension kept.
func contentAddress(dir, name string) (string, int64, error) {
	if name != path.Base(name) || strings.HasPrefix(name, ".") {
		return "", 0, fmt.Errorf("hls: unexpected file name %q in ffmpeg's playlist", name)
	}
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		return "", 0, fmt.Errorf("hls: %w", err)
	}
	h := sha256.New()
	size, err := io.Copy(h, f)
	f.Close()
	if err != nil {
		return "", 0, fmt.Errorf("hls: %w", err)
	}
	hashed := hex.EncodeToString(h.Sum(nil)[:16]) + path.Ext(name)
	if err := os.Rename(filepath.Join(dir, name), filepath.Join(dir, hashed)); err != nil {
		return "", 0, fmt.Errorf("hls: %w", err)
	}
	return hashed, size, nil
}
