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
	"encoding/binary"
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

// Rendition is one variant: AAC-LC at a bit rate, or the lossless tier.
type Rendition struct {
	Name    string // directory and label, e.g. "128k", or "flac"
	Bitrate int    // AAC bits per second; 0 for the lossless tier
	// Lossless is FLAC at the source's own sample rate, depth and
	// channels, made only from lossless uploads (FLAC, WAV, ALAC): from a
	// lossy one it would be the same lossy audio at several times the bytes.
	Lossless bool
}

// losslessName is the HLS_RENDITIONS entry of the lossless tier.
const losslessName = "flac"

// ParseRenditions reads HLS_RENDITIONS, e.g. "64k,128k,256k" or
// "64k,128k,256k,flac".
func ParseRenditions(s string) ([]Rendition, error) {
	var out []Rendition
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if slices.ContainsFunc(out, func(r Rendition) bool { return r.Name == part }) {
			return nil, fmt.Errorf("HLS_RENDITIONS: %s is listed twice", part)
		}
		if part == losslessName {
			out = append(out, Rendition{Name: part, Lossless: true})
			continue
		}
		kbps, ok := strings.CutSuffix(part, "k")
		n, err := strconv.Atoi(kbps)
		if !ok || err != nil || n < 16 || n > 512 {
			return nil, fmt.Errorf("HLS_RENDITIONS: %q is neither an AAC bit rate like 128k (16k to 512k) nor flac", part)
		}
		out = append(out, Rendition{Name: part, Bitrate: n * 1000})
	}
	if len(out) == 0 {
		return nil, errors.New("HLS_RENDITIONS is empty")
	}
	if !slices.ContainsFunc(out, func(r Rendition) bool { return !r.Lossless }) {
		return nil, errors.New("HLS_RENDITIONS: flac needs an AAC rendition beside it, for lossy uploads and for players without FLAC")
	}
	return out, nil
}

// Config is how packages are made.
type Config struct {
	FFmpeg, FFprobe string        // executables; "" finds them on PATH
	Renditions      []Rendition   // at least one AAC rendition
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
	if !slices.ContainsFunc(cfg.Renditions, func(r Rendition) bool { return !r.Lossless }) {
		return nil, errors.New("hls: at least one AAC rendition is required")
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

// MasterPlaylist is the package's master playlist: its AAC variants.
// LosslessPlaylist, in a package with the lossless tier, is the master
// that offers it too, first: listeners opt in to it, since players pick
// variants by bandwidth and would otherwise take the FLAC one (several
// times the CDN's bytes) on any fast network.
const (
	MasterPlaylist   = "master.m3u8"
	LosslessPlaylist = "lossless.m3u8"
)

// Package is a finished package on local disk. Files are in upload order:
// init and segment files, then media playlists, then the masters, so that
// no playlist is ever visible before what it references.
type Package struct {
	ID         string
	DurationMS int64
	Files      []File
	// Lossless is set when the package has the lossless tier, offered by
	// LosslessPlaylist.
	Lossless bool
	dir      string
}

// Remove deletes the package's local files.
func (p *Package) Remove() error { return os.RemoveAll(p.dir) }

// ID derives the package id from the source hash and the settings.
func (p *Packager) ID(sourceSHA256 string) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s|%s|%d", formatVersion, sourceSHA256, p.cfg.SegmentSeconds)
	for _, r := range p.cfg.Renditions {
		if r.Lossless {
			fmt.Fprintf(h, "|%s:lossless", r.Name)
		} else {
			fmt.Fprintf(h, "|%s:%d", r.Name, r.Bitrate)
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// Package packages the audio file at input. progress, if not nil, is
// called with the percentage done as ffmpeg reports it. Failures caused
// by the input wrap ErrBadInput.
func (p *Packager) Package(ctx context.Context, input, sourceSHA256 string, progress func(percent int)) (*Package, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	src, err := p.probe(ctx, input)
	if err != nil {
		return nil, err
	}
	renditions := p.renditionsFor(src)
	dir, err := os.MkdirTemp("", "playgate-hls-")
	if err != nil {
		return nil, err
	}
	pkg := &Package{ID: p.ID(sourceSHA256), dir: dir}
	if err := p.transcode(ctx, input, dir, renditions, src.duration, progress); err != nil {
		pkg.Remove()
		return nil, err
	}
	if err := p.assemble(pkg, renditions); err != nil {
		pkg.Remove()
		return nil, err
	}
	if d := time.Duration(pkg.DurationMS) * time.Millisecond; d > p.cfg.MaxDuration {
		pkg.Remove()
		return nil, fmt.Errorf("%w: the audio is longer than HLS_MAX_DURATION (%s)", ErrBadInput, p.cfg.MaxDuration)
	}
	return pkg, nil
}

// source is what ffprobe says of an upload's first audio stream.
type source struct {
	duration time.Duration
	lossless bool
}

// losslessCodecs are the decoders of lossless audio that FLAC holds
// without loss: ffmpeg 5.1's FLAC encoder takes integer samples of up to
// 24 bits, so neither float nor 32-bit PCM is here.
var losslessCodecs = []string{"flac", "alac", "pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_s24be", "pcm_u8", "pcm_s8"}

// renditionsFor drops the lossless tier for a lossy source.
func (p *Packager) renditionsFor(src source) []Rendition {
	return slices.DeleteFunc(slices.Clone(p.cfg.Renditions), func(r Rendition) bool { return r.Lossless && !src.lossless })
}

// probe asks ffprobe for the duration and codec of the first audio
// stream, which also proves there is one. The duration is what the
// file's headers claim (an MP3's Xing frame count, or its size over its
// first frames' bit rate), good enough for progress and for refusing a
// file that claims to be too long before spending ffmpeg on it. What a
// track lasts is measured on the packaged audio instead: a truncated
// upload claims its whole length, and a VBR MP3 without a Xing frame can
// claim a third of it.
func (p *Packager) probe(ctx context.Context, input string) (source, error) {
	out, err := exec.CommandContext(ctx, p.cfg.FFprobe, "-v", "error", "-select_streams", "a:0",
		"-show_entries", "format=duration:stream=codec_type,codec_name,bits_per_raw_sample", "-of", "default=noprint_wrappers=1", input).Output()
	if ctx.Err() != nil {
		return source{}, fmt.Errorf("hls: probing timed out: %w", ctx.Err())
	}
	if err != nil {
		return source{}, fmt.Errorf("%w: not a readable audio file (%s)", ErrBadInput, stderrOf(err))
	}
	var seconds float64
	audio := false
	var codec string
	var bits int
	for line := range strings.SplitSeq(string(out), "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), "=")
		switch k {
		case "codec_type":
			audio = audio || v == "audio"
		case "codec_name":
			codec = v
		case "bits_per_raw_sample":
			bits, _ = strconv.Atoi(v) // "N/A" when the codec does not say
		case "duration":
			seconds, _ = strconv.ParseFloat(v, 64)
		}
	}
	switch {
	case !audio:
		return source{}, fmt.Errorf("%w: no audio stream", ErrBadInput)
	case seconds <= 0 || math.IsNaN(seconds):
		return source{}, fmt.Errorf("%w: the audio has no duration", ErrBadInput)
	case time.Duration(seconds*float64(time.Second)) > p.cfg.MaxDuration:
		return source{}, fmt.Errorf("%w: %.0f s is longer than HLS_MAX_DURATION (%s)", ErrBadInput, seconds, p.cfg.MaxDuration)
	}
	return source{
		duration: time.Duration(seconds * float64(time.Second)),
		// A FLAC or ALAC file says its depth; 32-bit ones exist.
		lossless: slices.Contains(losslessCodecs, codec) && bits <= 24,
	}, nil
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
// The AAC options are given per output stream, so that the lossless
// rendition keeps the source's rate and channels.
func (p *Packager) transcode(ctx context.Context, input, dir string, renditions []Rendition, duration time.Duration, progress func(int)) error {
	// -t stops decoding just past HLS_MAX_DURATION, so audio longer than
	// its headers claim costs a bounded run and is then refused.
	limit := strconv.FormatFloat((p.cfg.MaxDuration + time.Second).Seconds(), 'f', 3, 64)
	args := []string{"-hide_banner", "-nostdin", "-loglevel", "error", "-nostats", "-progress", "pipe:1",
		"-t", limit, "-i", input, "-vn", "-sn", "-dn", "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:a", "+bitexact"}
	var streamMap []string
	for i, r := range renditions {
		args = append(args, "-map", "0:a:0")
		streamMap = append(streamMap, fmt.Sprintf("a:%d,name:%s", i, r.Name))
	}
	lossless := false
	for i, r := range renditions {
		if r.Lossless {
			lossless = true
			args = append(args, fmt.Sprintf("-c:a:%d", i), "flac")
			continue
		}
		args = append(args, fmt.Sprintf("-c:a:%d", i), "aac", fmt.Sprintf("-profile:a:%d", i), "aac_low",
			fmt.Sprintf("-ar:a:%d", i), "44100", fmt.Sprintf("-ac:a:%d", i), "2", fmt.Sprintf("-b:a:%d", i), strconv.Itoa(r.Bitrate))
	}
	if lossless {
		// ffmpeg 5.1's mp4 muxer calls FLAC experimental.
		args = append(args, "-strict", "-2")
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
// sets the package's duration: the longest AAC rendition's, what players
// will show.
func (p *Packager) assemble(pkg *Package, renditions []Rendition) error {
	var media []File
	master := &m3u8.Master{Version: 7, IndependentSegments: true}
	var lossless []m3u8.Variant
	for _, r := range renditions {
		rdir := filepath.Join(pkg.dir, r.Name)
		raw, err := os.ReadFile(filepath.Join(rdir, "index.m3u8"))
		if err != nil {
			return fmt.Errorf("%w: ffmpeg wrote no playlist for %s", ErrBadInput, r.Name)
		}
		pl, err := m3u8.ParseMedia(raw)
		if err != nil {
			return fmt.Errorf("hls: ffmpeg's playlist for %s: %w", r.Name, err)
		}
		if err := dropEmptyLastSegment(rdir, pl); err != nil {
			return err
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
		if !r.Lossless {
			// ffmpeg lists FLAC's last frame at its whole block size
			// (up to ~0.1 s) however few samples it holds; AAC's are
			// within a frame (23 ms) of what the upload lasts.
			pkg.DurationMS = max(pkg.DurationMS, int64(math.Round(d*1000)))
		}
		if peak == 0 && d > 0 { // nothing a second long: the average is all there is
			peak = float64(total*8) / d
		}
		if err := os.WriteFile(filepath.Join(rdir, "index.m3u8"), out.Encode(), 0o644); err != nil {
			return err
		}
		media = append(media, file(pkg.dir, r.Name, "index.m3u8"))
		v := m3u8.Variant{
			URI:              r.Name + "/index.m3u8",
			Bandwidth:        int64(math.Ceil(peak)),
			AverageBandwidth: int64(math.Ceil(float64(total*8) / d)),
			Codecs:           "mp4a.40.2",
		}
		if r.Lossless {
			v.Codecs = "fLaC"
			lossless = append(lossless, v)
			continue
		}
		master.Variants = append(master.Variants, v)
	}
	// Players start with the first variant: the 128k one when there is.
	slices.SortStableFunc(master.Variants, func(a, b m3u8.Variant) int {
		return boolInt(!strings.HasPrefix(a.URI, "128k/")) - boolInt(!strings.HasPrefix(b.URI, "128k/"))
	})
	pkg.Files = append(pkg.Files, media...)
	if len(lossless) > 0 {
		// The AAC variants stay, for when the network cannot carry FLAC
		// and for players that cannot play it.
		withLossless := &m3u8.Master{Version: 7, IndependentSegments: true, Variants: append(lossless, master.Variants...)}
		if err := writeMaster(pkg, LosslessPlaylist, withLossless); err != nil {
			return err
		}
		pkg.Lossless = true
	}
	return writeMaster(pkg, MasterPlaylist, master)
}

// writeMaster writes a master playlist at the package's root and lists
// it last among its files.
func writeMaster(pkg *Package, name string, m *m3u8.Master) error {
	local := filepath.Join(pkg.dir, name)
	if err := os.WriteFile(local, m.Encode(), 0o644); err != nil {
		return err
	}
	pkg.Files = append(pkg.Files, File{Rel: name, Local: local, ContentType: "application/vnd.apple.mpegurl"})
	return nil
}

// dropEmptyLastSegment removes a last segment that holds no media: for
// FLAC, ffmpeg 5.1 ends the playlist with a segment that is only a styp
// box, listed as long as one frame. Players fail on it or stall, and it
// would add a frame to the track's length.
func dropEmptyLastSegment(dir string, pl *m3u8.Media) error {
	if len(pl.Segments) == 0 {
		return nil
	}
	last := pl.Segments[len(pl.Segments)-1].URI
	if last != path.Base(last) || strings.HasPrefix(last, ".") {
		return fmt.Errorf("hls: unexpected file name %q in ffmpeg's playlist", last)
	}
	b, err := os.ReadFile(filepath.Join(dir, last))
	if err != nil {
		return fmt.Errorf("hls: %w", err)
	}
	if hasBox(b, "moof") {
		return nil
	}
	pl.Segments = pl.Segments[:len(pl.Segments)-1]
	return os.Remove(filepath.Join(dir, last))
}

// hasBox reports whether the ISO BMFF boxes in b include one of type
// typ at the top level.
func hasBox(b []byte, typ string) bool {
	for len(b) >= 8 {
		size := uint64(binary.BigEndian.Uint32(b))
		header := uint64(8)
		switch size {
		case 0: // the box runs to the end
			size = uint64(len(b))
		case 1: // a 64-bit size follows the type
			if len(b) < 16 {
				return false
			}
			size, header = binary.BigEndian.Uint64(b[8:]), 16
		}
		if string(b[4:8]) == typ {
			return true
		}
		if size < header || size > uint64(len(b)) {
			return false
		}
		b = b[size:]
	}
	return false
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
