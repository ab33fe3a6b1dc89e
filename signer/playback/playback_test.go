package playback_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/playgate/playgate/api/auth"
	"github.com/playgate/playgate/api/catalog"
	"github.com/playgate/playgate/api/hls/m3u8"
	"github.com/playgate/playgate/internal/ops"
	"github.com/playgate/playgate/internal/pgtest"
	"github.com/playgate/playgate/internal/problem"
	"github.com/playgate/playgate/internal/s3test"
	"github.com/playgate/playgate/origin/storage"
	"github.com/playgate/playgate/signer/playback"
	"github.com/playgate/playgate/signer/token"
	"github.com/playgate/playgate/signer/trackcache"
)

var pg *pgtest.Server

func TestMain(m *testing.M) { pgtest.Main(m, &pg) }

var (
	jwtSecret = []byte("signer-test-secret-signer-test-secret")
	cdnKey    = []byte("0d1c3a6e-9f7b-4b8e-8f5a-2c1d0e9f8a7b")
)

const cdnBase = "https://zone.b-cdn.test"

// queryCounter counts the queries a pool sends, to prove what the cache
// saves the database.
type queryCounter struct{ tracks, grants atomic.Int64 }

func (q *queryCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	switch {
	case strings.Contains(d.SQL, "FROM tracks"):
		q.tracks.Add(1)
	case strings.Contains(d.SQL, "share_links"), strings.Contains(d.SQL, "licenses"):
		q.grants.Add(1)
	}
	return ctx
}

func (q *queryCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

type harness struct {
	t       testing.TB
	objects storage.Backend
	srv     *playback.Server
	dbURL   string
	store   *catalog.Store
	cache   *trackcache.Cache
	queries *queryCounter
	verify  *token.Bunny
	ln      net.Listener
	client  *http.Client
	metrics *metrics.Set
}

type options struct {
	negativeTTL time.Duration
	listen      bool
	failSigning bool             // a CDN signer that always fails
	presign     playback.Presign // the fallback
	tcp         bool             // serve on a loopback port (for clients like ffmpeg)
	objects     storage.Backend  // where playlists are read (default: a temporary local dir)
	signer      token.Signer     // default: bunny
	provider    string
	corsOrigins []string // default: *
}

// brokenSigner stands in for a CDN signer that fails at run time.
type brokenSigner struct{}

func (brokenSigner) AppendURL(dst []byte, _ *token.Request) ([]byte, error) {
	return dst, errors.New("the CDN key service is down")
}

func (o options) signerFor(real token.Signer) token.Signer {
	if o.failSigning {
		return brokenSigner{}
	}
	return real
}

func newHarness(t testing.TB, o options) *harness {
	t.Helper()
	ctx := context.Background()
	dbURL := pg.NewDatabase(t)
	primary, err := pgxpool.New(ctx, dbURL)
	require.NoError(t, err)
	t.Cleanup(primary.Close)
	qc := &queryCounter{}
	cfg, err := pgxpool.ParseConfig(dbURL)
	require.NoError(t, err)
	cfg.ConnConfig.Tracer = qc
	read, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(read.Close)

	if o.negativeTTL == 0 {
		o.negativeTTL = time.Minute
	}
	if o.corsOrigins == nil {
		o.corsOrigins = []string{"*"}
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	set := metrics.NewSet()
	cache, err := trackcache.New(trackcache.Config{MaxBytes: 64 << 20, NegativeTTL: o.negativeTTL, GrantTTL: time.Minute}, read, log, set)
	require.NoError(t, err)
	t.Cleanup(cache.Close)
	if o.listen {
		lctx, cancel := context.WithCancel(ctx)
		t.Cleanup(cancel)
		ready := make(chan struct{})
		go cache.Listen(lctx, dbURL, ready)
		select {
		case <-ready:
		case <-time.After(10 * time.Second):
			t.Fatal("the listener did not start")
		}
	}
	objects := o.objects
	if objects == nil {
		local, err := storage.NewLocal(t.TempDir())
		require.NoError(t, err)
		objects = local
	}
	playlists := func(ctx context.Context, backend, key string) ([]byte, error) {
		rc, _, err := objects.Open(ctx, key, 0, -1)
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		return io.ReadAll(rc)
	}
	bunny, err := token.NewBunny(token.BunnyHMAC, cdnBase, cdnKey)
	require.NoError(t, err)
	var signer token.Signer = bunny
	if o.signer != nil {
		signer = o.signer
	}
	if o.provider == "" {
		o.provider = "bunny"
	}
	verifier, err := auth.NewVerifier(auth.Config{Secret: jwtSecret})
	require.NoError(t, err)
	srv, err := playback.New(playback.Config{Provider: o.provider, TokenTTL: time.Hour, TokenBucket: 5 * time.Minute, Capabilities: token.CapabilitiesOf(o.provider), CORSOrigins: o.corsOrigins},
		playback.Deps{Cache: cache, Signer: o.signerFor(signer), Verifier: verifier, Playlists: playlists,
			Presign: o.presign, Log: log, Metrics: set, Ready: cache.Ready(read)})
	require.NoError(t, err)

	var ln net.Listener = fasthttputil.NewInmemoryListener()
	if o.tcp {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- ops.Serve(sctx, srv.HTTPServer(), ln, 5*time.Second) }()
	t.Cleanup(func() { cancel(); <-done })
	return &harness{
		t: t, objects: objects, srv: srv, dbURL: dbURL, store: catalog.NewStore(primary, nil), cache: cache, queries: qc, verify: bunny, ln: ln,
		metrics: set,
		client: &http.Client{
			Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				if ml, ok := ln.(*fasthttputil.InmemoryListener); ok {
					return ml.Dial()
				}
				return (&net.Dialer{}).DialContext(ctx, "tcp", ln.Addr().String())
			}},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

type response struct {
	status int
	header http.Header
	body   []byte
	sent   time.Time // before the request left: the signer's clock read later
}

func (h *harness) get(path, user string, header ...string) response {
	h.t.Helper()
	req, err := http.NewRequest("GET", "http://signer"+path, nil)
	require.NoError(h.t, err)
	if user != "" {
		tok, err := auth.Mint(jwtSecret, auth.MintOptions{Subject: user, TTL: time.Hour})
		require.NoError(h.t, err)
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	sent := time.Now()
	resp, err := h.client.Do(req)
	require.NoError(h.t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b, sent: sent}
}

// track creates a track with audio (unless noAudio) and returns it.
func (h *harness) track(owner string, vis catalog.Visibility, price int64, noAudio bool) catalog.Track {
	h.t.Helper()
	ctx := context.Background()
	tr, err := h.store.CreateTrack(ctx, owner, catalog.NewTrack{Title: "Song", Artist: "A", Visibility: vis, PriceCents: price})
	require.NoError(h.t, err)
	if noAudio {
		return tr
	}
	sum := strings.Repeat("ab", 32)
	tr, err = h.store.SetAudio(ctx, tr.ID, "", catalog.Audio{
		Backend: "local", Key: catalog.OriginalKey(tr.ID, sum, "mp3"), ContentType: "audio/mpeg", Size: 1000, SHA256: sum,
	}, nil, nil)
	require.NoError(h.t, err)
	return tr
}

func (h *harness) share(tr catalog.Track, expires time.Time) string {
	tok, hash := catalog.NewShareToken()
	_, err := h.store.CreateShare(context.Background(), tr.ID, tr.OwnerID, hash, expires)
	require.NoError(h.t, err)
	return tok
}

// assertSignedRedirect checks a 302 to a URL that verifies at the edge.
func (h *harness) assertSignedRedirect(r response, wantPath string) string {
	h.t.Helper()
	require.Equal(h.t, http.StatusFound, r.status, "body: %s", r.body)
	loc := r.header.Get("Location")
	require.True(h.t, strings.HasPrefix(loc, cdnBase+"/"), "Location %s", loc)
	path, err := h.verify.Verify(strings.TrimPrefix(loc, cdnBase), netip.Addr{}, time.Now())
	require.NoError(h.t, err, "the edge accepts %s", loc)
	assert.Equal(h.t, wantPath, path)

	expires := expiresOf(h.t, loc)
	maxAge, err := strconv.ParseInt(strings.TrimPrefix(r.header.Get("Cache-Control"), "private, max-age="), 10, 64)
	require.NoError(h.t, err, "Cache-Control %q", r.header.Get("Cache-Control"))
	// From when the request left: the signer read its clock after that,
	// and a second may have begun since it answered.
	assert.LessOrEqual(h.t, r.sent.Unix()+maxAge, expires, "a cached redirect never outlives its token")
	assert.Greater(h.t, maxAge, int64(3000))
	assert.Zero(h.t, expires%300, "the expiry is rounded to the 5 min bucket")
	assert.Equal(h.t, "Authorization", r.header.Get("Vary"))
	assert.Contains(h.t, string(r.body), `href="`+strings.ReplaceAll(loc, "&", "&amp;")+`"`)
	return loc
}

// putMaster stores a master playlist of the given STREAM-INF attributes
// and URIs, in pairs.
func (h *harness) putMaster(key string, variants ...string) {
	h.t.Helper()
	b := "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n"
	for i := 0; i+1 < len(variants); i += 2 {
		b += "#EXT-X-STREAM-INF:" + variants[i] + "\n" + variants[i+1] + "\n"
	}
	_, err := h.objects.Put(context.Background(), key, strings.NewReader(b), "")
	require.NoError(h.t, err)
}

// exec changes the database behind the catalogue's back, as another
// writer would (the signer hears of it through NOTIFY).
func (h *harness) exec(sql string, args ...any) {
	h.t.Helper()
	pool, err := pgxpool.New(context.Background(), h.dbURL)
	require.NoError(h.t, err)
	defer pool.Close()
	_, err = pool.Exec(context.Background(), sql, args...)
	require.NoError(h.t, err)
}

func expiresOf(t testing.TB, loc string) int64 {
	t.Helper()
	i := strings.Index(loc, "expires=")
	require.Positive(t, i)
	s := loc[i+len("expires="):]
	if j := strings.IndexAny(s, "&/"); j >= 0 {
		s = s[:j]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	require.NoError(t, err)
	return n
}

func (r response) problemType(t *testing.T) string {
	t.Helper()
	assert.Equal(t, problem.ContentType, r.header.Get("Content-Type"))
	body := string(r.body)
	i := strings.Index(body, problem.TypeBase)
	require.GreaterOrEqual(t, i, 0, "body %s", r.body)
	rest := body[i+len(problem.TypeBase):]
	return rest[:strings.IndexByte(rest, '"')]
}

func TestAccessRules(t *testing.T) {
	h := newHarness(t, options{})
	ctx := context.Background()
	public := h.track("alice", catalog.Public, 0, false)
	unlisted := h.track("alice", catalog.Unlisted, 0, false)
	private := h.track("alice", catalog.Private, 0, false)
	paid := h.track("alice", catalog.Public, 199, false)
	silent := h.track("alice", catalog.Public, 0, true)
	deleted := h.track("alice", catalog.Public, 0, false)
	_, err := h.store.DeleteTrack(ctx, deleted.ID, nil)
	require.NoError(t, err)
	shareOK := h.share(private, time.Now().Add(time.Hour))
	shareExpired := h.share(private, time.Now().Add(-time.Minute))
	shareRevoked := h.share(private, time.Now().Add(time.Hour))
	pool, err := pgxpool.New(ctx, h.dbURL)
	require.NoError(t, err)
	defer pool.Close()
	_, err = pool.Exec(ctx, `UPDATE share_links SET revoked_at = now() WHERE token_hash = $1`, catalog.HashShareToken(shareRevoked))
	require.NoError(t, err)
	_, err = h.store.GrantLicense(ctx, paid.ID, "bob", "marketplace")
	require.NoError(t, err)

	stream := func(tr catalog.Track) string { return "/v1/tracks/" + tr.ID.String() + "/stream" }
	for _, c := range []struct {
		name, path, user string
		status           int
		typ              string
	}{
		{"public, anonymous", stream(public), "", 302, ""},
		{"unlisted, anonymous", stream(unlisted), "", 302, ""},
		{"private, owner", stream(private), "alice", 302, ""},
		{"private, stranger", stream(private), "bob", 404, "not-found"},
		{"private, anonymous", stream(private), "", 404, "not-found"},
		{"private, valid share", stream(private) + "?share=" + shareOK, "", 302, ""},
		{"private, expired share", stream(private) + "?share=" + shareExpired, "", 404, "not-found"},
		{"private, revoked share", stream(private) + "?share=" + shareRevoked, "", 404, "not-found"},
		{"private, malformed share", stream(private) + "?share=x", "", 404, "not-found"},
		{"deleted", stream(deleted), "alice", 404, "not-found"},
		{"unknown", "/v1/tracks/0190a0b4-0000-7000-8000-00000000beef/stream", "", 404, "not-found"},
		{"malformed id", "/v1/tracks/nope/stream", "", 400, "invalid-id"},
		{"no audio yet", stream(silent), "", 409, "not-ready"},
		{"paid stream is free to play", stream(paid), "", 302, ""},
		{"paid download, anonymous", "/v1/tracks/" + paid.ID.String() + "/download", "", 403, "purchase-required"},
		{"paid download, no licence", "/v1/tracks/" + paid.ID.String() + "/download", "carol", 403, "purchase-required"},
		{"paid download, licensed", "/v1/tracks/" + paid.ID.String() + "/download", "bob", 302, ""},
		{"paid download, owner", "/v1/tracks/" + paid.ID.String() + "/download", "alice", 302, ""},
		{"free download", "/v1/tracks/" + public.ID.String() + "/download", "", 302, ""},
		{"private download, stranger", "/v1/tracks/" + private.ID.String() + "/download", "bob", 404, "not-found"},
		{"hls not ready", "/v1/tracks/" + public.ID.String() + "/hls", "", 404, "not-ready"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := h.get(c.path, c.user)
			require.Equal(t, c.status, r.status, "body: %s", r.body)
			if c.typ != "" {
				assert.Equal(t, c.typ, r.problemType(t))
			}
		})
	}

	// The redirect itself.
	h.assertSignedRedirect(h.get(stream(public), ""), "/"+*public.ObjectKey)
	loc := h.assertSignedRedirect(h.get("/v1/tracks/"+paid.ID.String()+"/download", "bob"), "/"+*paid.ObjectKey)
	assert.Contains(t, loc, "download=Song.mp3")

	// A bad bearer token is 401 before any lookup: no oracle.
	r := h.get(stream(public), "", "Authorization", "Bearer forged")
	assert.Equal(t, http.StatusUnauthorized, r.status)
	r = h.get("/v1/tracks/0190a0b4-0000-7000-8000-00000000beef/stream", "", "Authorization", "Bearer forged")
	assert.Equal(t, http.StatusUnauthorized, r.status)
}

func TestHLSRedirectUsesADirectoryToken(t *testing.T) {
	h := newHarness(t, options{})
	tr := h.track("alice", catalog.Public, 0, false)
	pool, err := pgxpool.New(context.Background(), h.dbURL)
	require.NoError(t, err)
	defer pool.Close()
	prefix := "hls/" + tr.ID.String() + "/p1"
	_, err = pool.Exec(context.Background(), `UPDATE tracks SET hls_status = 'ready', hls_prefix = $2 WHERE id = $1`, tr.ID, prefix)
	require.NoError(t, err)

	loc := h.assertSignedRedirect(h.get("/v1/tracks/"+tr.ID.String()+"/hls", ""), "/"+prefix+"/master.m3u8")
	assert.True(t, strings.HasPrefix(loc, cdnBase+"/bcdn_token="), "path form: %s", loc)
	// Relative URIs resolve below the token and verify too.
	dir := loc[:strings.LastIndexByte(loc, '/')+1]
	for _, rel := range []string{"128k/index.m3u8", "128k/3f2a.m4s", "64k/0a1b.mp4"} {
		_, err := h.verify.Verify(strings.TrimPrefix(dir+rel, cdnBase), netip.Addr{}, time.Now())
		assert.NoError(t, err, rel)
	}
}

// /master.m3u8 answers the master playlist itself with every variant an
// absolute signed URL whose directory token opens the whole package.
func TestMasterPlaylist(t *testing.T) {
	h := newHarness(t, options{listen: true})
	tr := h.track("alice", catalog.Public, 0, false)
	path := "/v1/tracks/" + tr.ID.String() + "/master.m3u8"
	r := h.get(path, "")
	assert.Equal(t, http.StatusNotFound, r.status, "no package yet")
	assert.Equal(t, "not-ready", r.problemType(t))

	prefix := "hls/" + tr.ID.String() + "/p1"
	h.putMaster(prefix+"/master.m3u8",
		`BANDWIDTH=140000,AVERAGE-BANDWIDTH=130000,CODECS="mp4a.40.2"`, "128k/index.m3u8",
		`BANDWIDTH=70000,AVERAGE-BANDWIDTH=65000,CODECS="mp4a.40.2"`, "64k/index.m3u8")
	h.exec(`UPDATE tracks SET hls_status = 'ready', hls_prefix = $2 WHERE id = $1`, tr.ID, prefix)

	require.Eventually(t, func() bool { r = h.get(path, ""); return r.status == http.StatusOK },
		time.Second, 10*time.Millisecond, "the ready package is seen within a second: %s", r.body)
	assert.Equal(t, "application/vnd.apple.mpegurl", r.header.Get("Content-Type"))
	assert.True(t, strings.HasPrefix(r.header.Get("Cache-Control"), "private, max-age="))
	m, err := m3u8.ParseMaster(r.body)
	require.NoError(t, err)
	require.Len(t, m.Variants, 2)
	assert.EqualValues(t, 140000, m.Variants[0].Bandwidth, "attributes are kept")
	for i, rendition := range []string{"128k", "64k"} {
		u := m.Variants[i].URI
		require.True(t, strings.HasPrefix(u, cdnBase+"/bcdn_token="), "absolute, path-form: %s", u)
		p, err := h.verify.Verify(strings.TrimPrefix(u, cdnBase), netip.Addr{}, time.Now())
		require.NoError(t, err)
		assert.Equal(t, "/"+prefix+"/"+rendition+"/index.m3u8", p)
		// A segment URI relative to the media playlist keeps the token.
		seg := u[:strings.LastIndexByte(u, '/')+1] + "0a1b2c3d4e5f60718293a4b5c6d7e8f9.m4s"
		_, err = h.verify.Verify(strings.TrimPrefix(seg, cdnBase), netip.Addr{}, time.Now())
		assert.NoError(t, err)
	}
}

// The lossless tier is asked for (?quality=lossless), and only a package
// that has it offers it: players pick variants by bandwidth, and the
// standard master must not lead them to FLAC on every fast network.
func TestLosslessTierIsOptIn(t *testing.T) {
	h := newHarness(t, options{listen: true})
	tr := h.track("alice", catalog.Public, 0, false)
	prefix := "hls/" + tr.ID.String() + "/p1"
	h.putMaster(prefix+"/lossless.m3u8",
		`BANDWIDTH=900000,AVERAGE-BANDWIDTH=850000,CODECS="fLaC"`, "flac/index.m3u8",
		`BANDWIDTH=140000,AVERAGE-BANDWIDTH=130000,CODECS="mp4a.40.2"`, "128k/index.m3u8")
	setLossless := func(on bool) {
		h.exec(`UPDATE tracks SET hls_status = 'ready', hls_prefix = $2, hls_lossless = $3 WHERE id = $1`, tr.ID, prefix, on)
	}
	hls := "/v1/tracks/" + tr.ID.String() + "/hls"
	setLossless(false)
	var r response
	require.Eventually(t, func() bool { r = h.get(hls, ""); return r.status == http.StatusFound },
		time.Second, 10*time.Millisecond, "the ready package is seen within a second: %s", r.body)
	h.assertSignedRedirect(r, "/"+prefix+"/master.m3u8")
	h.assertSignedRedirect(h.get(hls+"?quality=standard", ""), "/"+prefix+"/master.m3u8")
	r = h.get(hls+"/lossless.m3u8", "")
	assert.Equal(t, http.StatusNotFound, r.status, "a package without the tier: the rewritten master")
	assert.Equal(t, "not-found", r.problemType(t))
	for _, path := range []string{hls, "/v1/tracks/" + tr.ID.String() + "/master.m3u8"} {
		r = h.get(path+"?quality=lossless", "")
		assert.Equal(t, http.StatusNotFound, r.status, "a package without the tier: %s", path)
		assert.Equal(t, "not-found", r.problemType(t))
		r = h.get(path+"?quality=hifi", "")
		assert.Equal(t, http.StatusBadRequest, r.status, path)
		assert.Equal(t, "invalid-parameter", r.problemType(t))
	}

	setLossless(true)
	require.Eventually(t, func() bool { r = h.get(hls+"?quality=lossless", ""); return r.status == http.StatusFound },
		time.Second, 10*time.Millisecond, "the lossless tier is seen within a second: %s", r.body)
	loc := h.assertSignedRedirect(r, "/"+prefix+"/lossless.m3u8")
	dir := loc[:strings.LastIndexByte(loc, '/')+1]
	_, err := h.verify.Verify(strings.TrimPrefix(dir+"flac/index.m3u8", cdnBase), netip.Addr{}, time.Now())
	assert.NoError(t, err, "the FLAC variant is under the token")
	h.assertSignedRedirect(h.get(hls, ""), "/"+prefix+"/master.m3u8")

	r = h.get("/v1/tracks/"+tr.ID.String()+"/master.m3u8?quality=lossless", "")
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	m, err := m3u8.ParseMaster(r.body)
	require.NoError(t, err)
	require.Len(t, m.Variants, 2)
	assert.Equal(t, "fLaC", m.Variants[0].Codecs)
	p, err := h.verify.Verify(strings.TrimPrefix(m.Variants[0].URI, cdnBase), netip.Addr{}, time.Now())
	require.NoError(t, err)
	assert.Equal(t, "/"+prefix+"/flac/index.m3u8", p)
}

// A change through the catalogue reaches the signer's cache within a
// second (LISTEN/NOTIFY).
func TestNotifyEvictsWithinOneSecond(t *testing.T) {
	h := newHarness(t, options{listen: true})
	tr := h.track("alice", catalog.Public, 0, false)
	path := "/v1/tracks/" + tr.ID.String() + "/stream"
	// The notifications of the track's own creation may still arrive and
	// evict a first fill; wait until plays are cache hits.
	require.Eventually(t, func() bool {
		require.Equal(t, http.StatusFound, h.get(path, "").status)
		before := h.queries.tracks.Load()
		require.Equal(t, http.StatusFound, h.get(path, "").status)
		return before == h.queries.tracks.Load()
	}, 5*time.Second, 20*time.Millisecond, "plays become cache hits")

	private := catalog.Private
	_, err := h.store.UpdateTrack(context.Background(), tr.ID, catalog.TrackPatch{Visibility: &private}, nil, nil)
	require.NoError(t, err)
	changed := time.Now()
	require.Eventually(t, func() bool { return h.get(path, "").status == http.StatusNotFound },
		time.Second, 10*time.Millisecond, "the signer still serves a track made private")
	t.Logf("evicted after %v", time.Since(changed))

	// A licence granted later is seen too (grants are invalidated with
	// their track).
	paid := h.track("alice", catalog.Public, 100, false)
	dl := "/v1/tracks/" + paid.ID.String() + "/download"
	require.Equal(t, http.StatusForbidden, h.get(dl, "bob").status)
	_, err = h.store.GrantLicense(context.Background(), paid.ID, "bob", "marketplace")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return h.get(dl, "bob").status == http.StatusFound },
		time.Second, 10*time.Millisecond)
}

// However many requests ask for an unknown id, at once or in a row, the
// database is asked once per negative TTL.
func TestUnknownIDsReachTheDatabaseOnce(t *testing.T) {
	h := newHarness(t, options{negativeTTL: time.Minute})
	ids := make([]string, 5)
	for i := range ids {
		ids[i] = uuid.Must(uuid.NewV7()).String()
	}
	var wg sync.WaitGroup
	for round := 0; round < 3; round++ {
		for i := 0; i < 40; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				assert.Equal(t, http.StatusNotFound, h.get("/v1/tracks/"+ids[i%len(ids)]+"/stream", "").status)
			}()
		}
		wg.Wait()
	}
	assert.EqualValues(t, len(ids), h.queries.tracks.Load(), "one query per unknown id")
}

// Concurrent misses for one track share one query (singleflight).
func TestConcurrentMissesShareOneQuery(t *testing.T) {
	h := newHarness(t, options{})
	tr := h.track("alice", catalog.Public, 0, false)
	path := "/v1/tracks/" + tr.ID.String() + "/stream"
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			assert.Equal(t, http.StatusFound, h.get(path, "").status)
		}()
	}
	close(start)
	wg.Wait()
	assert.EqualValues(t, 1, h.queries.tracks.Load())
}

// With the database down, cached tracks keep playing and uncached ones
// answer 503 with Retry-After.
func TestDatabaseDown(t *testing.T) {
	h := newHarness(t, options{listen: true})
	cached := h.track("alice", catalog.Public, 0, false)
	uncached := h.track("alice", catalog.Public, 0, false)
	require.Equal(t, http.StatusFound, h.get("/v1/tracks/"+cached.ID.String()+"/stream", "").status)

	restart := pg.Stop(t)
	defer func() { restart() }() // if the test fails before restarting
	r := h.get("/v1/tracks/"+cached.ID.String()+"/stream", "")
	assert.Equal(t, http.StatusFound, r.status, "a cached track plays with the database down")
	r = h.get("/v1/tracks/"+uncached.ID.String()+"/stream", "")
	assert.Equal(t, http.StatusServiceUnavailable, r.status)
	assert.Equal(t, "unavailable", r.problemType(t))
	assert.NotEmpty(t, r.header.Get("Retry-After"))
	assert.Equal(t, http.StatusOK, h.get("/readyz", "").status, "a warm signer stays ready")

	restart()
	restart = func() {}
	// Back: the listener reconnects and the uncached track plays.
	require.Eventually(t, func() bool {
		return h.get("/v1/tracks/"+uncached.ID.String()+"/stream", "").status == http.StatusFound
	}, 15*time.Second, 100*time.Millisecond)
}

func TestMetricsRegisteredOnce(t *testing.T) {
	h := newHarness(t, options{})
	tr := h.track("alice", catalog.Public, 0, false)
	h.get("/v1/tracks/"+tr.ID.String()+"/stream", "")
	h.get("/v1/tracks/"+tr.ID.String()+"/stream", "")
	r := h.get("/metrics", "")
	require.Equal(t, http.StatusOK, r.status)
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(r.body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		series := line[:strings.LastIndexByte(line, ' ')]
		assert.False(t, seen[series], "series %s exposed twice", series)
		seen[series] = true
	}
	body := string(r.body)
	assert.Contains(t, body, `playgate_signer_requests_total{route="/v1/tracks/{id}/stream",status="302"} 2`)
	assert.Contains(t, body, `playgate_signer_cache_requests_total{cache="tracks",result="hit"} 1`)
	assert.Contains(t, body, `playgate_signer_cache_requests_total{cache="tracks",result="miss"} 1`)
}

// When CDN signing fails at run time, a track on S3 still plays through a
// presigned URL straight to the bucket (SPEC §4.5); one on local disk
// gets a 500, never an unsigned URL.
func TestSignFailureFallsBackToS3Presign(t *testing.T) {
	bucket := s3test.Start(t).NewBucket(t)
	h := newHarness(t, options{failSigning: true, presign: func(ctx context.Context, backend, key string, ttl time.Duration, download string) (string, bool, error) {
		if backend != "s3" {
			return "", false, nil
		}
		u, err := bucket.PresignGet(ctx, key, ttl, download)
		return u, err == nil, err
	}})
	ctx := context.Background()
	data := []byte("the bytes of a track stored on S3")
	tr, err := h.store.CreateTrack(ctx, "alice", catalog.NewTrack{Title: "On S3", Artist: "A", Visibility: catalog.Public})
	require.NoError(t, err)
	sum := strings.Repeat("5a", 32)
	key := catalog.OriginalKey(tr.ID, sum, "mp3")
	_, err = bucket.Put(ctx, key, bytes.NewReader(data), "audio/mpeg")
	require.NoError(t, err)
	_, err = h.store.SetAudio(ctx, tr.ID, "", catalog.Audio{Backend: "s3", Key: key, ContentType: "audio/mpeg", Size: int64(len(data)), SHA256: sum}, nil, nil)
	require.NoError(t, err)

	r := h.get("/v1/tracks/"+tr.ID.String()+"/stream", "")
	require.Equal(t, http.StatusFound, r.status, "body %s", r.body)
	loc := r.header.Get("Location")
	assert.Contains(t, loc, "X-Amz-Signature=", "a SigV4 presigned URL")
	resp, err := http.Get(loc)
	require.NoError(t, err)
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, data, got, "the presigned URL serves the object")

	local := h.track("alice", catalog.Public, 0, false)
	r = h.get("/v1/tracks/"+local.ID.String()+"/stream", "")
	assert.Equal(t, http.StatusInternalServerError, r.status, "no fallback for local storage, and no unsigned URL")
	assert.Empty(t, r.header.Get("Location"))

	m := h.get("/metrics", "")
	assert.Contains(t, string(m.body), `playgate_signer_fallbacks_total{provider="bunny",to="s3presign"} 1`)
	assert.Contains(t, string(m.body), `playgate_signer_sign_errors_total{provider="bunny"} 2`)
}
