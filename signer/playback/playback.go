// Package playback is the signer's HTTP surface (SPEC §4.1, §4.2): it
// answers a player's request for a track with a 302 to a short-lived
// signed URL, after checking access against the track cache.
//
// This is the hot path of every play. A cache-hot request allocates
// nothing of its own: the id is parsed from the path bytes, the URL is
// appended into a pooled buffer, and headers are set from bytes.
package playback

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/VictoriaMetrics/metrics"
	"github.com/fasthttp/router"
	"github.com/google/uuid"
	"github.com/valyala/fasthttp"

	"github.com/playgate/playgate/api/auth"
	"github.com/playgate/playgate/api/catalog"
	"github.com/playgate/playgate/api/hls/m3u8"
	"github.com/playgate/playgate/internal/ops"
	"github.com/playgate/playgate/internal/problem"
	"github.com/playgate/playgate/signer/token"
	"github.com/playgate/playgate/signer/trackcache"
)

// Config is the signer's behaviour.
type Config struct {
	// Provider names the URL scheme, for metrics and errors.
	Provider string
	// TokenTTL is how long a signed URL works at least.
	TokenTTL time.Duration
	// TokenBucket rounds expiries up, so one caller gets one URL for a
	// while and caches can reuse it.
	TokenBucket time.Duration
	// BindIP binds each URL to the client's address.
	BindIP bool
	// TrustedProxies are the peers whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix
	// Capabilities of the provider: without path tokens, HLS goes through
	// playlists the signer rewrites.
	Capabilities token.Capabilities
	// CORSOrigins are the web players' origins allowed to call the signer
	// (hls.js follows its redirects with XHR); "*" allows any, none
	// disables CORS.
	CORSOrigins []string
}

// Presign makes a direct, presigned URL for an object in a backend; ok is
// false when that backend cannot presign (local storage).
type Presign func(ctx context.Context, backend, key string, ttl time.Duration, download string) (url string, ok bool, err error)

// Playlists reads a package's master playlist from storage. Packages are
// immutable (their directory is named after their content), so what it
// returns may be kept.
type Playlists func(ctx context.Context, backend, key string) ([]byte, error)

// Server answers playback requests.
type Server struct {
	cfg      Config
	cache    *trackcache.Cache
	signer   token.Signer
	verifier *auth.Verifier
	log      *slog.Logger
	handler  fasthttp.RequestHandler
	refuse   func(*fasthttp.RequestCtx, error) // the server's ErrorHandler
	now      func() time.Time

	scratch    sync.Pool // of *scratch
	signErrors *metrics.Counter
	routes     map[string]fasthttp.RequestHandler // by action, instrumented
	fallback   fasthttp.RequestHandler            // the router: ops endpoints, 404s

	playlists     Playlists
	presign       Presign
	playlistRoute fasthttp.RequestHandler
	media         sync.Map // media playlist key -> *m3u8.Media, immutable
	nMedia        atomic.Int64
	rewritten     sync.Map // key|expires -> []byte: a signed media playlist
	nRewritten    atomic.Int64
	fallbacks     *metrics.Counter
	masters       sync.Map // package dir -> *m3u8.Master, immutable
	nMasters      atomic.Int64
}

// maxMasters bounds the parsed master playlists kept; past it the set
// starts over (they are small and cheap to read again).
const maxMasters = 50_000

// scratch is per-request working memory, pooled so that a play allocates
// nothing: the request handed to the Signer interface would otherwise
// escape to the heap.
type scratch struct {
	buf  []byte
	path []byte // the object's path, which req.Path points into
	req  token.Request
}

// setPath makes p the path being signed, held in sc.path. The string
// req.Path then shares sc.path's bytes: valid until sc goes back to the
// pool, which is after the request is answered.
func (sc *scratch) setPath(p []byte) string {
	sc.path = p
	if len(p) == 0 {
		return ""
	}
	return unsafe.String(&p[0], len(p))
}

// Deps are the server's collaborators.
type Deps struct {
	Cache  *trackcache.Cache
	Signer token.Signer
	// Verifier checks bearer tokens; nil when no JWT configuration exists
	// (then only public, unlisted and shared tracks play).
	Verifier *auth.Verifier
	// Playlists reads master playlists for /master.m3u8; nil disables it.
	Playlists Playlists
	// Presign makes the fallback URL when signing fails; nil: none.
	Presign Presign
	Log     *slog.Logger
	Metrics *metrics.Set
	Ready   ops.Check
}

// New validates cfg and builds the server.
func New(cfg Config, d Deps) (*Server, error) {
	if cfg.TokenTTL < time.Minute {
		return nil, errors.New("CDN_TOKEN_TTL must be at least 1m")
	}
	if cfg.TokenBucket < 0 || cfg.TokenBucket > cfg.TokenTTL {
		return nil, errors.New("CDN_TOKEN_BUCKET must be between 0 and CDN_TOKEN_TTL")
	}
	if d.Cache == nil || d.Signer == nil || d.Log == nil || d.Metrics == nil {
		return nil, errors.New("playback: cache, signer, log and metrics are required")
	}
	set := d.Metrics
	s := &Server{
		cfg: cfg, cache: d.Cache, signer: d.Signer, verifier: d.Verifier, playlists: d.Playlists, presign: d.Presign,
		log: d.Log, now: time.Now,
		signErrors: set.NewCounter(fmt.Sprintf(`playgate_signer_sign_errors_total{provider=%q}`, cfg.Provider)),
		fallbacks:  set.NewCounter(fmt.Sprintf(`playgate_signer_fallbacks_total{provider=%q,to="s3presign"}`, cfg.Provider)),
	}
	s.scratch.New = func() any { return &scratch{buf: make([]byte, 0, 1024)} }

	rm := ops.NewRequestMetrics(set, "signer")
	// What fasthttp refuses before a handler runs carries CORS, as the
	// handlers' own errors do, so that a web player can read why.
	s.refuse = rm.Refusals(func(ctx *fasthttp.RequestCtx) { s.cors(ctx) })
	s.routes = map[string]fasthttp.RequestHandler{
		"stream":      rm.Wrap("/v1/tracks/{id}/stream", s.stream),
		"hls":         rm.Wrap("/v1/tracks/{id}/hls", s.hls),
		"download":    rm.Wrap("/v1/tracks/{id}/download", s.download),
		"master.m3u8": rm.Wrap("/v1/tracks/{id}/master.m3u8", s.master),
	}
	s.playlistRoute = rm.Wrap("/v1/tracks/{id}/hls/{playlist}", s.hlsPlaylist)
	r := router.New()
	r.NotFound = ops.NotFound
	r.MethodNotAllowed = ops.MethodNotAllowed
	ops.Mount(r, set, d.Ready)
	s.fallback = r.Handler
	s.handler = ops.Recover(d.Log, s.route)
	return s, nil
}

const tracksPrefix = "/v1/tracks/"

// route dispatches /v1/tracks/{id}/{action} itself: a general router boxes
// path parameters into interfaces, which costs allocations on every play.
func (s *Server) route(ctx *fasthttp.RequestCtx) {
	if s.cors(ctx) && ctx.IsOptions() {
		h := &ctx.Response.Header
		h.Set(fasthttp.HeaderAccessControlAllowMethods, "GET, HEAD")
		h.Set(fasthttp.HeaderAccessControlAllowHeaders, "Authorization, Range")
		h.Set(fasthttp.HeaderAccessControlMaxAge, "86400")
		ctx.SetStatusCode(fasthttp.StatusNoContent)
		return
	}
	_, action, ok := splitTrackPath(ctx.Path())
	if !ok {
		if _, _, ok := splitPlaylistPath(ctx.Path()); ok {
			s.playlistRoute(ctx)
			return
		}
		s.fallback(ctx)
		return
	}
	h, ok := s.routes[string(action)] // no allocation: map lookup of a converted []byte
	if !ok {
		s.fallback(ctx)
		return
	}
	if !ctx.IsGet() && !ctx.IsHead() {
		ctx.Response.Header.Set(fasthttp.HeaderAllow, "GET, HEAD")
		ops.MethodNotAllowed(ctx)
		return
	}
	h(ctx)
}

// cors adds CORS headers to every answer, errors included, and reports
// whether the request's origin is allowed.
func (s *Server) cors(ctx *fasthttp.RequestCtx) bool {
	for _, o := range s.cfg.CORSOrigins {
		if o == "*" {
			ctx.Response.Header.Set(fasthttp.HeaderAccessControlAllowOrigin, "*")
			return true
		}
		if origin := ctx.Request.Header.Peek(fasthttp.HeaderOrigin); string(origin) == o {
			ctx.Response.Header.SetBytesV(fasthttp.HeaderAccessControlAllowOrigin, origin)
			ctx.Response.Header.Add(fasthttp.HeaderVary, "Origin")
			return true
		}
	}
	return false
}

// splitPlaylistPath splits "/v1/tracks/{id}/hls/{playlist}", where the
// playlist is a master (masterPlaylist, losslessPlaylist) or
// "{rendition}/index.m3u8".
func splitPlaylistPath(path []byte) (id, playlist []byte, ok bool) {
	rest, ok := bytes.CutPrefix(path, []byte(tracksPrefix))
	if !ok {
		return nil, nil, false
	}
	i := bytes.IndexByte(rest, '/')
	if i < 0 {
		return nil, nil, false
	}
	id, rest = rest[:i], rest[i+1:]
	playlist, ok = bytes.CutPrefix(rest, []byte("hls/"))
	if !ok {
		return nil, nil, false
	}
	if isMaster(playlist) {
		return id, playlist, true
	}
	r, file, ok := bytes.Cut(playlist, []byte("/"))
	if !ok || len(r) == 0 || string(file) != "index.m3u8" || bytes.ContainsAny(r, "./") {
		return nil, nil, false
	}
	return id, playlist, true
}

// A package's master playlists (api/hls: MasterPlaylist and
// LosslessPlaylist): its AAC variants, and, in a package with the
// lossless tier, the same with FLAC first, for listeners who opt in.
const (
	masterPlaylist   = "master.m3u8"
	losslessPlaylist = "lossless.m3u8"
)

func isMaster(playlist []byte) bool {
	return string(playlist) == masterPlaylist || string(playlist) == losslessPlaylist
}

// masterOf names the master playlist a request asks for: the AAC one, or
// with ?quality=lossless the one with the lossless tier. It answers the
// request itself when it cannot be served.
func masterOf(ctx *fasthttp.RequestCtx, t *trackcache.Track) (string, bool) {
	switch string(ctx.QueryArgs().Peek("quality")) {
	case "", "standard":
		return masterPlaylist, true
	case "lossless":
		return losslessOf(ctx, t)
	default:
		problem.Write(ctx, fasthttp.StatusBadRequest, problem.InvalidParameter, "quality must be standard or lossless")
		return "", false
	}
}

// losslessOf answers 404 for a track whose package has no lossless tier
// (a lossy upload, or HLS_RENDITIONS without flac).
func losslessOf(ctx *fasthttp.RequestCtx, t *trackcache.Track) (string, bool) {
	if !t.HLSLossless {
		problem.Write(ctx, fasthttp.StatusNotFound, problem.NotFound, "the track has no lossless tier")
		return "", false
	}
	return losslessPlaylist, true
}

// trackIDOf is the id segment of either path shape.
func trackIDOf(path []byte) []byte {
	if id, _, ok := splitTrackPath(path); ok {
		return id
	}
	id, _, _ := splitPlaylistPath(path)
	return id
}

// splitTrackPath splits "/v1/tracks/{id}/{action}".
func splitTrackPath(path []byte) (id, action []byte, ok bool) {
	if !bytes.HasPrefix(path, []byte(tracksPrefix)) {
		return nil, nil, false
	}
	rest := path[len(tracksPrefix):]
	i := bytes.IndexByte(rest, '/')
	if i < 0 || bytes.IndexByte(rest[i+1:], '/') >= 0 {
		return nil, nil, false
	}
	return rest[:i], rest[i+1:], true
}

// Handler is the signer's root handler.
func (s *Server) Handler() fasthttp.RequestHandler { return s.handler }

// HTTPServer is a fasthttp server tuned for small, fast requests.
func (s *Server) HTTPServer() *fasthttp.Server {
	return &fasthttp.Server{
		Handler:            s.handler,
		Name:               "playgate-signer",
		ReadTimeout:        10 * time.Second,
		WriteTimeout:       10 * time.Second,
		IdleTimeout:        2 * time.Minute,
		MaxRequestBodySize: 4 << 10, // nothing here takes a body
		ReadBufferSize:     8 << 10,
		ErrorHandler:       s.refuse,
		Logger:             ops.FastHTTPLog(s.log),
		CloseOnShutdown:    true,
	}
}

// caller is the request's verified user, "" when anonymous. An
// Authorization header that does not verify is answered 401 before any
// track is looked up, so the answer says nothing about the track.
func (s *Server) caller(ctx *fasthttp.RequestCtx) (string, bool) {
	h := ctx.Request.Header.Peek(fasthttp.HeaderAuthorization)
	if len(h) == 0 {
		return "", true
	}
	if s.verifier == nil {
		problem.Write(ctx, fasthttp.StatusUnauthorized, problem.Unauthorized, "this signer accepts no bearer tokens")
		return "", false
	}
	tok, err := auth.BearerToken(string(h))
	var claims *auth.Claims
	if err == nil {
		claims, err = s.verifier.Verify(tok)
	}
	if err != nil {
		ctx.Response.Header.Set(fasthttp.HeaderWWWAuthenticate, `Bearer realm="playgate"`)
		problem.Write(ctx, fasthttp.StatusUnauthorized, problem.Unauthorized, "the bearer token is not valid")
		return "", false
	}
	return claims.Subject, true
}

// resolve finds the track a request names and checks that the caller may
// play it (SPEC §4.2). It answers the request itself when not.
func (s *Server) resolve(ctx *fasthttp.RequestCtx) (*trackcache.Track, string, bool) {
	user, ok := s.caller(ctx)
	if !ok {
		return nil, "", false
	}
	id, err := parseID(trackIDOf(ctx.Path())) // route matched the shape already
	if err != nil {
		problem.Write(ctx, fasthttp.StatusBadRequest, problem.InvalidID, "the track id is not a UUID")
		return nil, "", false
	}
	t, err := s.cache.Track(context.Background(), id)
	if err != nil {
		s.unavailable(ctx)
		return nil, "", false
	}
	if !t.Found {
		notFound(ctx)
		return nil, "", false
	}
	if t.Visibility == trackcache.Private && user != t.Owner() {
		share := ctx.QueryArgs().Peek("share")
		if !catalog.ValidShareTokenSyntax(string(share)) {
			notFound(ctx)
			return nil, "", false
		}
		opens, err := s.cache.ShareOpens(context.Background(), t, catalog.HashShareToken(string(share)))
		if err != nil {
			s.unavailable(ctx)
			return nil, "", false
		}
		if !opens {
			notFound(ctx)
			return nil, "", false
		}
	}
	return t, user, true
}

var errBadID = errors.New("playback: not a canonical UUID")

// parseID parses a canonical UUID without allocating.
func parseID(b []byte) (uuid.UUID, error) {
	if len(b) != 36 {
		return uuid.Nil, errBadID
	}
	id, err := uuid.ParseBytes(b)
	if err != nil {
		return uuid.Nil, errBadID
	}
	return id, nil
}

// hasAudio answers 409 not-ready for a track without stored audio.
func hasAudio(ctx *fasthttp.RequestCtx, t *trackcache.Track) bool {
	if !t.HasAudio() {
		problem.Write(ctx, fasthttp.StatusConflict, problem.NotReady, "the track has no audio yet")
		return false
	}
	return true
}

// hasHLS answers 404 not-ready (SPEC §4.1) for a track without a ready
// package, or when this signer cannot serve playlists.
func hasHLS(ctx *fasthttp.RequestCtx, t *trackcache.Track, servable bool) bool {
	if !t.HasHLS() || !servable {
		problem.Write(ctx, fasthttp.StatusNotFound, problem.NotReady, "the track has no HLS package ready")
		return false
	}
	return true
}

// notFound is the one answer for unknown, deleted and forbidden tracks:
// no existence oracle.
func notFound(ctx *fasthttp.RequestCtx) {
	problem.Write(ctx, fasthttp.StatusNotFound, problem.NotFound, "no such track")
}

func (s *Server) unavailable(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, "2")
	problem.Write(ctx, fasthttp.StatusServiceUnavailable, problem.Unavailable, "the catalogue is unavailable; retry shortly")
}

func (s *Server) stream(ctx *fasthttp.RequestCtx) {
	t, _, ok := s.resolve(ctx)
	if !ok {
		return
	}
	if !hasAudio(ctx, t) {
		return
	}
	sc := s.scratch.Get().(*scratch)
	defer s.scratch.Put(sc)
	sc.req = token.Request{Path: sc.setPath(t.AppendObjectPath(sc.path[:0]))}
	s.redirect(ctx, sc, t.Backend())
}

// hls redirects to the signed master playlist of the ready package. The
// token is in the path and opens the whole package directory, so every
// relative URI in the playlists inherits it.
func (s *Server) hls(ctx *fasthttp.RequestCtx) {
	t, _, ok := s.resolve(ctx)
	if !ok {
		return
	}
	if !hasHLS(ctx, t, true) {
		return
	}
	name, ok := masterOf(ctx, t)
	if !ok {
		return
	}
	if !s.cfg.Capabilities.PathTokens {
		// Relative URIs in a playlist would lose a query-string token:
		// the signer serves the playlists itself, every URI signed.
		loc := "/v1/tracks/" + t.ID.String() + "/hls/" + name
		if share := ctx.QueryArgs().Peek("share"); len(share) > 0 {
			loc += "?share=" + string(share) // resolve checked its syntax
		}
		ctx.Response.Header.Set(fasthttp.HeaderLocation, loc)
		ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "private, max-age=60")
		ctx.SetStatusCode(fasthttp.StatusFound)
		return
	}
	sc := s.scratch.Get().(*scratch)
	defer s.scratch.Put(sc)
	p := t.AppendHLSDir(sc.path[:0])
	dir := len(p)
	master := sc.setPath(append(p, name...))
	sc.req = token.Request{Path: master, TokenPath: master[:dir], PathForm: true}
	// No fallback for HLS: a presigned URL opens one object, and a
	// package is many.
	s.redirect(ctx, sc, "")
}

// master answers with the master playlist itself, every variant URI an
// absolute signed URL with a path-form directory token, so the media
// playlists' relative URIs inherit it. For players that handle redirects
// to playlists badly (Apple's HLS authoring spec advises against them).
func (s *Server) master(ctx *fasthttp.RequestCtx) {
	t, _, ok := s.resolve(ctx)
	if !ok {
		return
	}
	if !hasHLS(ctx, t, s.playlists != nil) {
		return
	}
	name, ok := masterOf(ctx, t)
	if !ok {
		return
	}
	dir := t.HLSDir()
	m, err := s.loadMaster(t, dir, name)
	if err != nil {
		s.log.Error("cannot read master playlist", "track", t.ID, "err", err)
		s.unavailable(ctx)
		return
	}
	now := s.now()
	r := token.Request{TokenPath: dir, PathForm: true, Expires: token.ExpiryBucket(now, s.cfg.TokenTTL, s.cfg.TokenBucket)}
	if s.cfg.BindIP {
		r.IP = s.clientIP(ctx)
	}
	out := *m
	out.Variants = make([]m3u8.Variant, len(m.Variants))
	for i, v := range m.Variants {
		r.Path = dir + v.URI
		u, err := s.signer.AppendURL(nil, &r)
		if err != nil {
			s.signErrors.Inc()
			problem.Write(ctx, fasthttp.StatusInternalServerError, problem.Internal, "cannot sign the URL")
			return
		}
		v.URI = string(u)
		out.Variants[i] = v
	}
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "private, max-age="+strconv.FormatInt(max(r.Expires-now.Unix(), 0), 10))
	ctx.Response.Header.Add(fasthttp.HeaderVary, "Authorization")
	ctx.SetContentType("application/vnd.apple.mpegurl")
	ctx.SetBody(out.Encode())
}

// hlsPlaylist serves the playlists of a package rewritten for a CDN
// without path tokens: the master's variants point back here (carrying
// the share token, which relative URIs would lose), and a media
// playlist's init and segment URIs become signed CDN URLs.
func (s *Server) hlsPlaylist(ctx *fasthttp.RequestCtx) {
	t, _, ok := s.resolve(ctx)
	if !ok {
		return
	}
	if !hasHLS(ctx, t, s.playlists != nil) {
		return
	}
	_, playlist, _ := splitPlaylistPath(ctx.Path())
	now := s.now()
	expires := token.ExpiryBucket(now, s.cfg.TokenTTL, s.cfg.TokenBucket)
	dir := t.HLSDir()
	var body []byte
	if isMaster(playlist) {
		if string(playlist) == losslessPlaylist {
			if _, ok := losslessOf(ctx, t); !ok {
				return
			}
		}
		m, err := s.loadMaster(t, dir, string(playlist))
		if err != nil {
			s.log.Error("cannot read master playlist", "track", t.ID, "err", err)
			s.unavailable(ctx)
			return
		}
		suffix := ""
		if share := ctx.QueryArgs().Peek("share"); len(share) > 0 {
			suffix = "?share=" + string(share)
		}
		out := *m
		out.Variants = make([]m3u8.Variant, len(m.Variants))
		for i, v := range m.Variants {
			v.URI += suffix
			out.Variants[i] = v
		}
		body = out.Encode()
	} else {
		rendition := string(playlist[:bytes.IndexByte(playlist, '/')])
		// Within one expiry bucket every unbound caller gets the same
		// signed playlist: sign it once (CloudFront signs with RSA).
		cacheKey := dir + rendition + "|" + strconv.FormatInt(expires, 10)
		if cached, ok := s.rewritten.Load(cacheKey); ok && !s.cfg.BindIP {
			s.writePlaylist(ctx, cached.([]byte), expires, now)
			return
		}
		m, err := s.loadMedia(t, dir, rendition)
		if err != nil {
			s.log.Error("cannot read media playlist", "track", t.ID, "rendition", rendition, "err", err)
			problem.Write(ctx, fasthttp.StatusNotFound, problem.NotFound, "no such rendition")
			return
		}
		r := token.Request{Expires: expires}
		if s.cfg.Capabilities.DirectoryPolicy {
			r.TokenPath = dir // one policy for the whole package (CloudFront)
		}
		if s.cfg.BindIP {
			r.IP = s.clientIP(ctx)
		}
		out := *m
		sign := func(uri string) (string, error) {
			r.Path = dir + rendition + "/" + uri
			u, err := s.signer.AppendURL(nil, &r)
			return string(u), err
		}
		if out.MapURI, err = sign(m.MapURI); err != nil {
			s.signErrors.Inc()
			problem.Write(ctx, fasthttp.StatusInternalServerError, problem.Internal, "cannot sign the URL")
			return
		}
		out.Segments = make([]m3u8.Segment, len(m.Segments))
		for i, seg := range m.Segments {
			if seg.URI, err = sign(seg.URI); err != nil {
				s.signErrors.Inc()
				problem.Write(ctx, fasthttp.StatusInternalServerError, problem.Internal, "cannot sign the URL")
				return
			}
			out.Segments[i] = seg
		}
		body = out.Encode()
		if !s.cfg.BindIP {
			if s.nRewritten.Add(1) > maxMasters {
				s.rewritten.Clear()
				s.nRewritten.Store(1)
			}
			s.rewritten.Store(cacheKey, body)
		}
	}
	s.writePlaylist(ctx, body, expires, now)
}

// writePlaylist answers a playlist whose URLs expire at expires.
func (s *Server) writePlaylist(ctx *fasthttp.RequestCtx, body []byte, expires int64, now time.Time) {
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "private, max-age="+strconv.FormatInt(max(expires-now.Unix(), 0), 10))
	ctx.Response.Header.Add(fasthttp.HeaderVary, "Authorization")
	ctx.SetContentType("application/vnd.apple.mpegurl")
	ctx.SetBody(body)
}

// loadMedia reads and parses a rendition's media playlist once; dir is
// t.HLSDir().
func (s *Server) loadMedia(t *trackcache.Track, dir, rendition string) (*m3u8.Media, error) {
	key := strings.TrimPrefix(dir, "/") + rendition + "/index.m3u8"
	if m, ok := s.media.Load(key); ok {
		return m.(*m3u8.Media), nil
	}
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := s.playlists(c, t.Backend(), key)
	if err != nil {
		return nil, err
	}
	m, err := m3u8.ParseMedia(b)
	if err != nil {
		return nil, err
	}
	for _, uri := range m.URIs() {
		if strings.ContainsAny(uri, "/:?") || strings.HasPrefix(uri, ".") {
			return nil, fmt.Errorf("URI %q is not a file of the rendition", uri)
		}
	}
	if s.nMedia.Add(1) > maxMasters {
		s.media.Clear()
		s.nMedia.Store(1)
	}
	s.media.Store(key, m)
	return m, nil
}

// loadMaster reads and parses one of a package's master playlists once;
// dir is t.HLSDir().
func (s *Server) loadMaster(t *trackcache.Track, dir, name string) (*m3u8.Master, error) {
	key := strings.TrimPrefix(dir, "/") + name
	if m, ok := s.masters.Load(key); ok {
		return m.(*m3u8.Master), nil
	}
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := s.playlists(c, t.Backend(), key)
	if err != nil {
		return nil, err
	}
	m, err := m3u8.ParseMaster(b)
	if err != nil {
		return nil, err
	}
	for _, v := range m.Variants {
		if strings.Contains(v.URI, "://") || strings.HasPrefix(v.URI, "/") || strings.Contains(v.URI, "..") {
			return nil, fmt.Errorf("variant URI %q is not relative to the package", v.URI)
		}
	}
	if s.nMasters.Add(1) > maxMasters {
		s.masters.Clear()
		s.nMasters.Store(1)
	}
	s.masters.Store(key, m)
	return m, nil
}

// download redirects to the original as an attachment. Paid tracks need
// their owner or a licence.
func (s *Server) download(ctx *fasthttp.RequestCtx) {
	t, user, ok := s.resolve(ctx)
	if !ok {
		return
	}
	if !hasAudio(ctx, t) {
		return
	}
	if t.Paid && user != t.Owner() {
		licensed := false
		if user != "" {
			var err error
			if licensed, err = s.cache.Licensed(context.Background(), t, user); err != nil {
				s.unavailable(ctx)
				return
			}
		}
		if !licensed {
			problem.Write(ctx, fasthttp.StatusForbidden, problem.PurchaseRequired, "downloading this track needs a licence")
			return
		}
	}
	sc := s.scratch.Get().(*scratch)
	defer s.scratch.Put(sc)
	sc.req = token.Request{Path: t.ObjectPath(), Download: downloadName(t)}
	s.redirect(ctx, sc, t.Backend())
}

// maxDownloadNameBytes bounds the file name's stem, well inside every
// file system's 255 bytes once the extension is added.
const maxDownloadNameBytes = 120

// downloadName is the attachment's file name: the title, made safe for a
// header and a file system, with the original's extension.
func downloadName(t *trackcache.Track) string {
	ext := t.Ext()
	name := strings.Map(func(r rune) rune {
		switch {
		case r < 0x20, r == 0x7f, strings.ContainsRune(`"\/:*?<>|`, r):
			return '_'
		}
		return r
	}, strings.TrimSpace(t.Title))
	if len(name) > maxDownloadNameBytes {
		// Cut at a character's start: half a character would reach the
		// browser as a replacement mark.
		cut := maxDownloadNameBytes
		for cut > 0 && !utf8.RuneStart(name[cut]) {
			cut--
		}
		name = name[:cut]
	}
	if name == "" {
		name = t.ID.String()
	}
	return name + "." + ext
}

// redirect signs r and answers 302. The response may be cached privately
// for as long as the URL works, never longer, so a cached redirect never
// carries an expired token.
//
// If signing fails and the object is in a backend that can presign (S3),
// the answer is a presigned URL straight to the bucket (SPEC §4.5), so
// a CDN-side fault does not stop playback; backend "" allows no fallback.
func (s *Server) redirect(ctx *fasthttp.RequestCtx, sc *scratch, backend string) {
	r := &sc.req
	now := s.now()
	r.Expires = token.ExpiryBucket(now, s.cfg.TokenTTL, s.cfg.TokenBucket)
	if s.cfg.BindIP {
		r.IP = s.clientIP(ctx)
	}
	u, err := s.signer.AppendURL(sc.buf[:0], r)
	if err != nil {
		s.signErrors.Inc()
		s.log.Error("cannot sign", "provider", s.cfg.Provider, "path", r.Path, "err", err)
		if u, ok := s.presignFallback(backend, r, now); ok {
			sc.buf = append(sc.buf[:0], u...)
			u := sc.buf
			s.writeRedirect(ctx, sc, u, r.Expires, now)
			return
		}
		problem.Write(ctx, fasthttp.StatusInternalServerError, problem.Internal, "cannot sign the URL")
		return
	}
	s.writeRedirect(ctx, sc, u, r.Expires, now)
}

// presignFallback presigns the object directly, if its backend can.
func (s *Server) presignFallback(backend string, r *token.Request, now time.Time) (string, bool) {
	if backend == "" || s.presign == nil {
		return "", false
	}
	c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	// A copy: r.Path shares the pooled scratch's bytes.
	u, ok, err := s.presign(c, backend, strings.Clone(strings.TrimPrefix(r.Path, "/")), time.Duration(r.Expires-now.Unix())*time.Second, r.Download)
	if err != nil || !ok {
		if err != nil {
			s.log.Error("cannot presign the fallback URL", "path", r.Path, "err", err)
		}
		return "", false
	}
	s.fallbacks.Inc()
	return u, true
}

// writeRedirect answers 302 to u, cacheable privately until expires.
func (s *Server) writeRedirect(ctx *fasthttp.RequestCtx, sc *scratch, u []byte, expires int64, now time.Time) {
	h := &ctx.Response.Header
	h.SetStatusCode(fasthttp.StatusFound)
	h.SetBytesV(fasthttp.HeaderLocation, u)

	// Cache-Control and the body are built after the URL in the same
	// buffer.
	mark := len(u)
	cc := append(u, "private, max-age="...)
	cc = strconv.AppendInt(cc, max(expires-now.Unix(), 0), 10)
	h.SetBytesV(fasthttp.HeaderCacheControl, cc[mark:])
	h.Add(fasthttp.HeaderVary, "Authorization") // after cors's Origin, if it echoed one
	h.SetContentType("text/html; charset=utf-8")
	// RFC 9110 §15.4.3: a short hypertext note with a link to the target.
	body := append(cc[:mark], `<a href="`...)
	body = appendHTMLAttr(body, u)
	body = append(body, "\">Found</a>.\n"...)
	ctx.Response.SetBody(body[mark:])
	sc.buf = body // keep the grown buffer for the next request
}

// appendHTMLAttr escapes a URL for a double-quoted attribute.
func appendHTMLAttr(dst, s []byte) []byte {
	for _, c := range s {
		switch c {
		case '&':
			dst = append(dst, "&amp;"...)
		case '"':
			dst = append(dst, "&quot;"...)
		case '<':
			dst = append(dst, "&lt;"...)
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// clientIP is the peer's address, or, when the peer is a trusted proxy,
// the rightmost X-Forwarded-For address that is not one.
func (s *Server) clientIP(ctx *fasthttp.RequestCtx) netip.Addr {
	peer, _ := netip.AddrFromSlice(ctx.RemoteIP())
	peer = peer.Unmap()
	if !s.trusted(peer) {
		return peer
	}
	xff := string(ctx.Request.Header.Peek(fasthttp.HeaderXForwardedFor))
	for xff != "" {
		i := strings.LastIndexByte(xff, ',')
		part := strings.TrimSpace(xff[i+1:])
		xff = xff[:max(i, 0)]
		ip, err := netip.ParseAddr(part)
		if err != nil {
			return peer // a malformed chain: trust nothing in it
		}
		ip = ip.Unmap()
		if !s.trusted(ip) {
			return ip
		}
		if i < 0 {
			return ip
		}
	}
	return peer
}

func (s *Server) trusted(ip netip.Addr) bool {
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
