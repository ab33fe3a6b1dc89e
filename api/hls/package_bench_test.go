package hls

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// BenchmarkPackageThreeMinutes packages a 3-minute 192 kb/s MP3 into the
// default three renditions (SPEC §12: well under real time, i.e. far
// below 180 s per op).
//
//	go test -run XXX -bench PackageThreeMinutes -benchtime 3x ./api/hls/
func BenchmarkPackageThreeMinutes(b *testing.B) {
	src := filepath.Join(b.TempDir(), "three.mp3")
	out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi",
		"-i", "sine=frequency=440:duration=180", "-c:a", "libmp3lame", "-b:a", "192k", src).CombinedOutput()
	require.NoError(b, err, "%s", out)
	renditions, err := ParseRenditions("64k,128k,256k")
	require.NoError(b, err)
	p, err := New(Config{Renditions: renditions})
	require.NoError(b, err)
	for b.Loop() {
		pkg, err := p.Package(context.Background(), src, strings.Repeat("ab", 32), nil)
		require.NoError(b, err)
		require.NoError(b, pkg.Remove())
	}
}
