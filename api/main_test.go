package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/playgate/playgate/api/auth"
	"github.com/playgate/playgate/api/catalog"
	"github.com/playgate/playgate/api/hls"
	"github.com/playgate/playgate/internal/pgtest"
)

var pg *pgtest.Server

func TestMain(m *testing.M) { pgtest.Main(m, &pg) }

const testSecret = "0123456789abcdef0123456789abcdef"

func TestTokenCommand(t *testing.T) {
	t.Setenv("AUTH_JWT_SECRET", testSecret)
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"token", "--sub", "alice", "--ttl", "2h", "--role", "marketplace"}, &out, &out))
	tok := strings.TrimSpace(out.String())
	assert.NotContains(t, tok, "\n", "prints the token and nothing else")
	v, err := auth.NewVerifier(auth.Config{Secret: []byte(testSecret)})
	require.NoError(t, err)
	c, err := v.Verify(tok)
	require.NoError(t, err)
	assert.Equal(t, "alice", c.Subject)
	assert.Equal(t, "marketplace", c.Role)
	assert.WithinDuration(t, time.Now().Add(2*time.Hour), c.ExpiresAt.Time, 10*time.Second)

	assert.Error(t, run(context.Background(), []string{"token"}, &out, &out), "a subject is required")
	t.Setenv("AUTH_JWT_SECRET", "")
	assert.ErrorContains(t, run(context.Background(), []string{"token", "--sub", "a"}, &out, &out), "AUTH_JWT_SECRET")
}

func TestMigrateCommand(t *testing.T) {
	t.Setenv("DATABASE_URL", pg.NewEmptyDatabase(t))
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"migrate"}, &out, &out))
	assert.Contains(t, out.String(), "applied 0001_catalog")
	out.Reset()
	require.NoError(t, run(context.Background(), []string{"migrate"}, &out, &out))
	assert.Equal(t, "database is up to date\n", out.String())
}

// Invalid configuration stops start-up with one line per problem.
func TestServeReportsEveryConfigProblem(t *testing.T) {
	t.Setenv("DATABASE_URL", "")
	t.Setenv("TRACK_STORAGE_BACKEND", "floppy")
	t.Setenv("UPLOAD_MAX_BYTES", "-1")
	t.Setenv("UPLOAD_CONCURRENCY", "0")
	t.Setenv("UPLOAD_TIMEOUT", "2h")
	t.Setenv("UPLOAD_SWEEP_AFTER", "2h")
	t.Setenv("CDN_TOKEN_BUCKET", "-5m")
	var out bytes.Buffer
	err := run(context.Background(), []string{"serve"}, &out, &out)
	require.Error(t, err)
	for _, want := range []string{"DATABASE_URL is required", "TRACK_STORAGE_BACKEND must be local or s3", "UPLOAD_MAX_BYTES must be positive",
		"UPLOAD_CONCURRENCY must be at least 1", "UPLOAD_SWEEP_AFTER must be at least UPLOAD_TIMEOUT plus 10 minutes",
		"CDN_TOKEN_TTL and CDN_TOKEN_BUCKET must not be negative"} {
		assert.Contains(t, err.Error(), want)
	}
	assert.Equal(t, 7, strings.Count(err.Error(), "\n")+1, "a heading and one line per problem: %s", err)
}

func TestServeRefusesAShortSecret(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://127.0.0.1:1/x")
	t.Setenv("AUTH_JWT_SECRET", "short")
	err := run(context.Background(), []string{"serve"}, &bytes.Buffer{}, &bytes.Buffer{})
	assert.ErrorContains(t, err, "AUTH_JWT_SECRET must be at least 32 bytes")
}

func TestUnknownCommand(t *testing.T) {
	assert.ErrorContains(t, run(context.Background(), []string{"dance"}, &bytes.Buffer{}, &bytes.Buffer{}), "unknown command")
}

func TestOrphansCommand(t *testing.T) {
	t.Setenv("DATABASE_URL", pg.NewDatabase(t))
	dir := t.TempDir()
	t.Setenv("STORAGE_DIR", dir)
	t.Setenv("TRACK_STORAGE_BACKEND", "local")
	// An original whose track is gone, as a failed delete leaves it.
	key := "tracks/0190a0b4-0000-7000-8000-000000000009/" + strings.Repeat("ab", 32) + ".mp3"
	path := filepath.Join(dir, key)
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte("audio"), 0o644))
	old := time.Now().Add(-72 * time.Hour)
	require.NoError(t, os.Chtimes(path, old, old))

	var out, errOut bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"orphans"}, &out, &errOut))
	assert.Equal(t, "local\t"+key+"\t5\t"+old.UTC().Format(time.RFC3339)+"\n", out.String())
	assert.Contains(t, errOut.String(), "1 orphans, 5 bytes")
	assert.FileExists(t, path, "listing removes nothing")

	require.NoError(t, run(context.Background(), []string{"orphans", "--min-age", "96h"}, &out, &errOut))
	assert.Contains(t, errOut.String(), "0 orphans", "younger than --min-age")

	require.NoError(t, run(context.Background(), []string{"orphans", "--delete"}, &out, &errOut))
	assert.Contains(t, errOut.String(), "deleted 1")
	assert.NoFileExists(t, path)

	assert.ErrorContains(t, run(context.Background(), []string{"orphans", "--min-age", "1h"}, &out, &errOut), "at least 24h")
}

// api repackage queues a refresh of each ready track whose package was
// made with other settings than the configured ones, and the packaging
// of each track stored while HLS was off, once.
func TestRepackageCommand(t *testing.T) {
	dbURL := pg.NewDatabase(t)
	t.Setenv("DATABASE_URL", dbURL)
	t.Setenv("STORAGE_DIR", t.TempDir())
	t.Setenv("TRACK_STORAGE_BACKEND", "local")
	t.Setenv("HLS_RENDITIONS", "64k,128k")
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, dbURL)
	require.NoError(t, err)
	defer pool.Close()
	store := catalog.NewStore(pool, nil)
	renditions, err := hls.ParseRenditions("64k,128k")
	require.NoError(t, err)
	packager, err := hls.New(hls.Config{Renditions: renditions})
	require.NoError(t, err)
	// withAudio makes a track with stored audio, and with a ready package
	// of packageID's when it is not nil.
	withAudio := func(n int, packageID func(sha string) string) (uuid.UUID, string) {
		tr, err := store.CreateTrack(ctx, "alice", catalog.NewTrack{Title: "T", Artist: "A", Visibility: catalog.Public})
		require.NoError(t, err)
		sha := strings.Repeat(strconv.Itoa(n), 64)
		_, err = store.SetAudio(ctx, tr.ID, "", catalog.Audio{Backend: "local", Key: catalog.OriginalKey(tr.ID, sha, "flac"),
			ContentType: "audio/flac", Size: 1, SHA256: sha}, nil, nil)
		require.NoError(t, err)
		if packageID == nil {
			return tr.ID, "-"
		}
		prefix := hls.PackagePrefix(tr.ID, packageID(sha))
		_, err = store.FinishHLS(ctx, tr.ID, sha, prefix, 1000, false)
		require.NoError(t, err)
		return tr.ID, prefix
	}
	current, currentPrefix := withAudio(1, packager.ID)
	stale, stalePrefix := withAudio(2, func(string) string { return "0123456789abcdef" })
	unpackaged, _ := withAudio(3, nil) // stored while HLS_STREAMING was false
	jobs := func() []string {
		rows, err := pool.Query(ctx, `SELECT (args->>'track_id') || ' ' || coalesce(args->>'refresh', 'false')
			FROM river_job WHERE kind = 'hls_package' ORDER BY id`)
		require.NoError(t, err)
		out, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		return out
	}
	lines := func(out string) []string { return strings.Split(strings.TrimSpace(out), "\n") }

	var out, errOut bytes.Buffer
	require.NoError(t, run(ctx, []string{"repackage", "--dry-run"}, &out, &errOut))
	assert.ElementsMatch(t, []string{stale.String() + "\t" + stalePrefix, unpackaged.String() + "\t-"}, lines(out.String()))
	assert.Contains(t, errOut.String(), "2 tracks to package (dry run")
	assert.Empty(t, jobs())

	require.NoError(t, run(ctx, []string{"repackage"}, &out, &errOut))
	want := []string{stale.String() + " true", unpackaged.String() + " false"}
	assert.ElementsMatch(t, want, jobs(), "a refresh of the stale package, a packaging of the other")
	tr, err := store.TrackForUpdate(ctx, unpackaged)
	require.NoError(t, err)
	assert.Equal(t, catalog.HLSQueued, tr.HLSStatus, "queued with its job, as an upload is")
	out.Reset()
	require.NoError(t, run(ctx, []string{"repackage"}, &out, &errOut))
	assert.Equal(t, []string{stale.String() + "\t" + stalePrefix}, lines(out.String()), "the queued track is no longer listed")
	assert.ElementsMatch(t, want, jobs(), "nothing is queued twice")

	t.Setenv("HLS_RENDITIONS", "64k,128k,flac") // new settings: every package is stale
	out.Reset()
	require.NoError(t, run(ctx, []string{"repackage", "--dry-run"}, &out, &errOut))
	assert.ElementsMatch(t, []string{stale.String() + "\t" + stalePrefix, current.String() + "\t" + currentPrefix}, lines(out.String()))
}

// CDN purges go through the job queue: a track turned private is purged
// from a job in PostgreSQL, by the worker inside api serve, or, as the
// Kubernetes manifests deploy it, by a separate api worker. A deleted
// track is also purged once more when the last URL signed for it has
// expired (CDN_TOKEN_TTL and CDN_TOKEN_BUCKET, read as the signer reads
// them).
//
// Through the self-hosted edge, which forgets objects one by one, a
// purge names the objects below a directory as storage holds them when
// it is queued: the delete's jobs name the package's segments, which are
// gone by the time they run.
func TestServePurgesThroughTheJobQueue(t *testing.T) {
	for _, c := range []struct {
		name                   string
		separateWorker, toEdge bool
	}{{"in api serve", false, false}, {"in api worker", true, false}, {"to the self-hosted edge", false, true}} {
		t.Run(c.name, func(t *testing.T) { testPurgesThroughTheJobQueue(t, c.separateWorker, c.toEdge) })
	}
}

func testPurgesThroughTheJobQueue(t *testing.T, separateWorker, toEdge bool) {
	var mu sync.Mutex
	var purged []string
	// Bunny's purge API, or the self-hosted edge's purge endpoint.
	purgeAPI := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		if toEdge {
			purged = append(purged, strings.TrimPrefix(r.URL.Path, "/purge"))
		} else {
			purged = append(purged, r.URL.Query().Get("url"))
		}
		mu.Unlock()
	}))
	defer purgeAPI.Close()
	dbURL := pg.NewDatabase(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	workers := "1"
	if separateWorker {
		workers = "0"
	}
	storageDir := t.TempDir()
	env := map[string]string{"EDGE_PURGE_URL": ""}
	if toEdge {
		env["EDGE_PURGE_URL"] = purgeAPI.URL
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	for k, v := range map[string]string{
		"DATABASE_URL": dbURL, "API_ADDR": addr, "STORAGE_DIR": storageDir, "AUTH_JWT_SECRET": testSecret,
		"CDN_ENABLED": "true", "CDN_PROVIDER": "bunny", "CDN_BASE_URL": "https://z.b-cdn.net",
		"CDN_API_KEY": "bunny-api-key", "BUNNY_API_URL": purgeAPI.URL, "WORKER_CONCURRENCY": workers,
		"CDN_TOKEN_TTL": "10m", "CDN_TOKEN_BUCKET": "1m",
	} {
		t.Setenv(k, v)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	start := func(cmd string) {
		wg.Go(func() { assert.NoError(t, run(ctx, []string{cmd}, io.Discard, io.Discard), cmd) })
	}
	defer func() {
		cancel()
		wg.Wait()
	}()
	start("serve")
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == http.StatusOK
	}, 30*time.Second, 50*time.Millisecond)
	if separateWorker {
		// api serve has read its configuration: the worker reads its own.
		t.Setenv("WORKER_CONCURRENCY", "1")
		start("worker")
	}

	tok, err := auth.Mint([]byte(testSecret), auth.MintOptions{Subject: "alice", TTL: time.Hour})
	require.NoError(t, err)
	call := func(method, path, body string) *http.Response {
		req, err := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	resp := call("POST", "/v1/tracks", `{"title":"Song","artist":"A","visibility":"public"}`)
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	var tr struct{ ID string }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&tr))
	// A package's segment, as the packager would have stored it.
	segment := "hls/" + tr.ID + "/p1/128k/" + strings.Repeat("ab", 32) + ".m4s"
	require.NoError(t, os.MkdirAll(filepath.Join(storageDir, filepath.Dir(segment)), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(storageDir, segment), []byte("segment"), 0o644))
	require.Equal(t, http.StatusOK, call("PATCH", "/v1/tracks/"+tr.ID, `{"visibility":"private"}`).StatusCode)

	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(purged) > 0
	}, 30*time.Second, 50*time.Millisecond, "the purge reaches the CDN")
	require.Eventually(t, func() bool {
		var jobs int
		require.NoError(t, pgxQueryRow(t, dbURL, `SELECT count(*) FROM river_job WHERE kind = 'cdn_purge' AND state = 'completed'`, &jobs))
		return jobs == 1
	}, 30*time.Second, 50*time.Millisecond, "through a job")
	mu.Lock()
	assert.Contains(t, purged[0], "/hls/"+tr.ID+"/")
	mu.Unlock()

	require.Equal(t, http.StatusNoContent, call("DELETE", "/v1/tracks/"+tr.ID, "").StatusCode)
	_, err = os.Stat(filepath.Join(storageDir, segment))
	require.ErrorIs(t, err, os.ErrNotExist, "the delete removed the package")
	var later []string
	// 10m + 1m, and a minute for clocks.
	require.NoError(t, pgxQueryRow(t, dbURL, `SELECT args->'paths' FROM river_job WHERE kind = 'cdn_purge' AND state = 'scheduled'
		AND scheduled_at BETWEEN now() + interval '11 minutes 50 seconds' AND now() + interval '12 minutes'`, &later))
	if toEdge {
		assert.Equal(t, []string{segment}, later, "the delete's last purge names the segment, listed before it went")
		require.Eventually(t, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(purged) == 2
		}, 30*time.Second, 50*time.Millisecond, "the delete's first purge reaches the edge")
		mu.Lock()
		assert.Equal(t, []string{"/" + segment, "/" + segment}, purged, "turned private, then deleted")
		mu.Unlock()
		return
	}
	assert.Equal(t, []string{"hls/" + tr.ID + "/"}, later, "the delete's last purge waits for the last signed URL to expire")
}

func pgxQueryRow(t *testing.T, dbURL, sql string, dest ...any) error {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dbURL)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	return conn.QueryRow(context.Background(), sql).Scan(dest...)
}
