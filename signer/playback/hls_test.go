package playback_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/playgate/playgate/api/catalog"
	"github.com/playgate/playgate/api/hls"
	"github.com/playgate/playgate/internal/s3test"
	"github.com/playgate/playgate/signer/token"
)

var ffmpegTime = regexp.MustCompile(`time=(\d+):(\d+):(\d+\.\d+)`)

// With a CDN that has no path tokens (here s3presign on a real S3
// server), a packaged track plays with ffmpeg as the client through the
// signer's rewritten playlists, every segment fetched straight from the
// bucket with a presigned URL: its AAC variants, and with
// ?quality=lossless its lossless tier too.
func TestHLSThroughRewrittenPlaylistsWithS3Presign(t *testing.T) {
	bucket := s3test.Start(t).NewBucket(t)
	h := newHarness(t, options{tcp: true, objects: bucket, provider: "s3presign",
		signer: token.NewS3Presign(bucket.Client(), bucket.Bucket())})
	ctx := context.Background()

	// A real package, uploaded as the worker does.
	src := filepath.Join(t.TempDir(), "tone.flac")
	out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=12", src).CombinedOutput()
	require.NoError(t, err, "%s", out)
	renditions, err := hls.ParseRenditions("64k,128k,flac")
	require.NoError(t, err)
	packager, err := hls.New(hls.Config{Renditions: renditions})
	require.NoError(t, err)
	pkg, err := packager.Package(ctx, src, strings.Repeat("ab", 32), nil)
	require.NoError(t, err)
	defer pkg.Remove()
	tr := h.track("alice", catalog.Private, 0, false)
	prefix := "hls/" + tr.ID.String() + "/" + pkg.ID
	for _, f := range pkg.Files {
		r, err := os.Open(f.Local)
		require.NoError(t, err)
		_, err = bucket.Put(ctx, prefix+"/"+f.Rel, r, f.ContentType)
		r.Close()
		require.NoError(t, err)
	}
	pool, err := pgxpool.New(ctx, h.dbURL)
	require.NoError(t, err)
	defer pool.Close()
	require.True(t, pkg.Lossless)
	_, err = pool.Exec(ctx, `UPDATE tracks SET storage_backend = 's3', hls_status = 'ready', hls_prefix = $2, hls_lossless = true
		WHERE id = $1`, tr.ID, prefix)
	require.NoError(t, err)
	share := h.share(tr, time.Now().Add(time.Hour))

	// The track is private: the share token must survive into the
	// playlists the player fetches next.
	for query, variants := range map[string][]string{
		"":                  {"aac", "aac"},
		"&quality=lossless": {"flac", "aac", "aac"},
	} {
		url := "http://" + h.ln.Addr().String() + "/v1/tracks/" + tr.ID.String() + "/hls?share=" + share + query
		args := []string{"-hide_banner", "-nostdin", "-i", url}
		for i := range variants {
			args = append(args, "-map", "0:a:"+strconv.Itoa(i))
		}
		b, err := exec.Command("ffmpeg", append(args, "-f", "null", "-")...).CombinedOutput()
		require.NoError(t, err, "ffmpeg could not play %q:\n%s", query, b)
		m := ffmpegTime.FindAllStringSubmatch(string(b), -1)
		require.NotEmpty(t, m)
		last := m[len(m)-1]
		mins, _ := strconv.ParseFloat(last[2], 64)
		secs, _ := strconv.ParseFloat(last[3], 64)
		assert.GreaterOrEqual(t, mins*60+secs, 11.5, "decoded to the end")
		assert.Contains(t, string(b), "X-Amz-Signature=", "segments came from presigned URLs")
		for i, codec := range variants {
			assert.Regexp(t, `Stream #0:`+strconv.Itoa(i)+`.*: Audio: `+codec, string(b), "variant %d of %q", i, query)
		}
		assert.NotRegexp(t, `Stream #0:`+strconv.Itoa(len(variants)), string(b), "no more variants in %q", query)
	}

	// Without the share token, the rewritten playlists are not served.
	r := h.get("/v1/tracks/"+tr.ID.String()+"/hls/128k/index.m3u8", "")
	assert.Equal(t, 404, r.status)
}
