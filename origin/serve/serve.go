// Package serve is the origin's HTTP surface (SPEC §5): GET and HEAD of
// objects under tracks/ and hls/ from the storage backends, with RFC 9110
// ranges and conditionals, the caching headers CDNs and players need,
// CORS, and the pull authentication of SPEC §5.4. It never touches the
// database, so origins scale by copies.
//
// Multiple ranges: overlapping and adjacent ones are merged; if more than
// one remains, the whole representation is sent with 200 (RFC 9110 §14.2
// lets a server ignore Range). CDNs and players ask for one range.
package serve

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/fasthttp/router"
	"github.com/valyala/fasthttp"

	"github.com/playgate/playgate/internal/ops"
	"github.com/playgate/playgate/internal/problem"
	"github.com/playgate/playgate/origin/storage"
	"github.com/playgate/playgate/signer/token"
)

// Auth is who may pull (SPEC §5.4).
type Auth string

// The pull authentication modes.
const (
	AuthToken  Auth = "token"  // a signed URL, verified as the edge would
	AuthHeader Auth = "header" // a shared secret header the CDN adds
	AuthNone   Auth = "none"   // private networks only
)

// Config is the origin's behaviour.
type Config struct {
	Auth Auth
	// Verifier checks signed URLs (AuthToken).
	Verifier token.Verifier
	// SecretHeader and Secret are the shared secret (AuthHeader).
	SecretHeader string
	Secret       []byte
	// CORSOrigins are the allowed origins; "*" allows any.
	CORSOrigins []string
	// PlaylistMaxAge is how long CDNs and players may cache a playlist.
	PlaylistMaxAge time.Duration
	// WriteTimeout bounds sending one response (large originals to slow
	// clients need minutes).
	WriteTimeout time.Duration
	// StorageTimeout bounds a remote backend's answer to a lookup or an
	// open, not the transfer of a body after it: a bucket that accepts a
	// request and never answers would otherwise hold the request, and its
	// connection, for good. Default 30s.
	StorageTimeout time.Duration
	// MaxConns bounds concurrent connections.
	MaxConns int
}

// Validate reports every problem at once.
func (c *Config) Validate() error {
	var errs []error
	switch c.Auth {
	case AuthToken:
		if c.Verifier == nil {
			errs = append(errs, errors.New("ORIGIN_AUTH=token needs ORIGIN_TOKEN_KEY"))
		}
	case AuthHeader:
		if len(c.Secret) < 16 {
			errs = append(errs, errors.New("ORIGIN_AUTH=header needs ORIGIN_SECRET of at least 16 characters"))
		}
		if c.SecretHeader == "" {
			errs = append(errs, errors.New("ORIGIN_SECRET_HEADER must not be empty"))
		}
	case AuthNone:
	default:
		errs = append(errs, fmt.Errorf("ORIGIN_AUTH must be token, header or none, not %q", c.Auth))
	}
	if len(c.CORSOrigins) == 0 {
		errs = append(errs, errors.New("CORS_ORIGINS must name at least one origin, or *"))
	}
	if c.PlaylistMaxAge < 0 {
		errs = append(errs, errors.New("PLAYLIST_MAX_AGE must not be negative"))
	}
	if c.StorageTimeout < 0 {
		errs = append(errs, errors.New("ORIGIN_STORAGE_TIMEOUT must not be negative"))
	}
	return errors.Join(errs...)
}

// maxPlaylistBytes bounds a playlist read whole to be compressed.
const maxPlaylistBytes = 1 << 20

// Server serves objects.
type Server struct {
	cfg       Config
	backends  []storage.Backend // tried in order on not-found
	log       *slog.Logger
	handler   fasthttp.RequestHandler
	refuse    func(*fasthttp.RequestCtx, error) // the server's ErrorHandler
	corsAny   bool
	immutable string
	playlist  string

	// requests are timed until the last byte of the body is sent, as
	// nginx's $request_time is, not until the handler returns: a body is
	// streamed after it.
	requests      *ops.Route
	bytesServed   map[string]*metrics.Counter
	storageTime   map[string]*metrics.PrometheusHistogram
	rangeRequests *metrics.Counter
	authFailures  *metrics.Counter
	// Local reads by where their descriptor came from: kept open from an
	// earlier read, or opened for this one (ORIGIN_OPEN_FILES sizing).
	keptFiles, openedFiles *metrics.Counter
}

// New builds the origin. backends are tried in order: the configured one,
// then, during a migration between backends, the other.
func New(cfg Config, backends []storage.Backend, log *slog.Logger, set *metrics.Set) (*Server, error) {
	if cfg.PlaylistMaxAge == 0 {
		cfg.PlaylistMaxAge = time.Minute
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = 10 * time.Minute
	}
	if cfg.StorageTimeout == 0 {
		cfg.StorageTimeout = 30 * time.Second
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(backends) == 0 || log == nil || set == nil {
		return nil, errors.New("serve: a backend, a logger and metrics are required")
	}
	s := &Server{
		cfg: cfg, backends: backends, log: log,
		corsAny:       slices.Contains(cfg.CORSOrigins, "*"),
		immutable:     "public, max-age=31536000, immutable",
		playlist:      "public, max-age=" + strconv.Itoa(int(cfg.PlaylistMaxAge.Seconds())),
		bytesServed:   map[string]*metrics.Counter{},
		storageTime:   map[string]*metrics.PrometheusHistogram{},
		rangeRequests: set.NewCounter("playgate_origin_range_requests_total"),
		authFailures:  set.NewCounter("playgate_origin_auth_failures_total"),
	}
	rm := ops.NewRequestMetrics(set, "origin")
	s.requests = rm.Route("object")
	// What fasthttp refuses before the handler runs is answered as the
	// origin's own errors are: with CORS, so that a web player can read
	// why, and no-store.
	s.refuse = rm.Refusals(func(ctx *fasthttp.RequestCtx) {
		s.cors(ctx)
		ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store")
	})
	for _, b := range backends {
		s.bytesServed[b.Name()] = set.GetOrCreateCounter(fmt.Sprintf(`playgate_origin_served_bytes_total{backend=%q}`, b.Name()))
		s.storageTime[b.Name()] = set.GetOrCreatePrometheusHistogram(fmt.Sprintf(`playgate_origin_storage_duration_seconds{backend=%q}`, b.Name()))
	}
	for _, b := range backends {
		if l, ok := b.(*storage.Local); ok {
			s.keptFiles = set.NewCounter(`playgate_origin_local_files_total{descriptor="kept"}`)
			s.openedFiles = set.NewCounter(`playgate_origin_local_files_total{descriptor="opened"}`)
			set.NewGauge("playgate_origin_local_kept_files", func() float64 { return float64(l.Kept()) })
			break
		}
	}
	if cfg.Auth == AuthNone {
		log.Warn("ORIGIN_AUTH=none: anyone who can reach this origin can read every object; use it on private networks only")
	}

	r := router.New()
	r.NotFound = ops.NotFound
	r.MethodNotAllowed = ops.MethodNotAllowed
	ops.Mount(r, set, nil)
	s.handler = ops.Recover(log, func(ctx *fasthttp.RequestCtx) {
		p := ctx.Path()
		if bytes.Equal(p, []byte("/healthz")) || bytes.Equal(p, []byte("/readyz")) || bytes.Equal(p, []byte("/metrics")) {
			r.Handler(ctx)
			return
		}
		start := time.Now()
		s.object(ctx, start)
		s.requests.Count(ctx.Response.StatusCode())
		if !ctx.Response.IsBodyStream() {
			s.requests.Took(start)
		} // else the body's Close does, once it is sent (sendTimer)
	})
	return s, nil
}

// Handler is the origin's root handler.
func (s *Server) Handler() fasthttp.RequestHandler { return s.handler }

// HTTPServer is a fasthttp server hardened for the open internet: bounded
// headers, no request bodies, timeouts, a connection limit.
func (s *Server) HTTPServer() *fasthttp.Server {
	return &fasthttp.Server{
		Handler:            s.handler,
		Name:               "playgate-origin",
		ReadBufferSize:     8 << 10, // bounds the request line and headers
		WriteBufferSize:    writeBufferSize,
		MaxRequestBodySize: 1 << 10,
		ReadTimeout:        15 * time.Second,
		WriteTimeout:       s.cfg.WriteTimeout,
		IdleTimeout:        2 * time.Minute,
		Concurrency:        s.cfg.MaxConns,
		ErrorHandler:       s.refuse,
		Logger:             ops.FastHTTPLog(s.log),
		CloseOnShutdown:    true,
		// Objects are already compressed audio; playlists are gzipped by
		// the handler itself.
		NoDefaultContentType: true,
	}
}

// object answers a request for an object that began at start. A body it
// streams records the request's duration when fasthttp closes it.
func (s *Server) object(ctx *fasthttp.RequestCtx, start time.Time) {
	s.cors(ctx)
	switch {
	case ctx.IsOptions():
		s.preflight(ctx)
		return
	case !ctx.IsGet() && !ctx.IsHead():
		ctx.Response.Header.Set(fasthttp.HeaderAllow, "GET, HEAD, OPTIONS")
		problem.WriteUncacheable(ctx, fasthttp.StatusMethodNotAllowed, problem.MethodNotAllowed, "method not allowed")
		return
	}

	rawPath := string(ctx.Request.URI().PathOriginal())
	if s.cfg.Auth == AuthToken {
		peer, _ := netip.AddrFromSlice(ctx.RemoteIP())
		p, err := s.cfg.Verifier.Verify(string(ctx.RequestURI()), peer.Unmap(), time.Now())
		if err != nil {
			s.authFailures.Inc()
			problem.WriteUncacheable(ctx, fasthttp.StatusForbidden, problem.Forbidden, "missing, expired or invalid token")
			return
		}
		rawPath = p
	} else if s.cfg.Auth == AuthHeader {
		got := ctx.Request.Header.Peek(s.cfg.SecretHeader)
		if subtle.ConstantTimeCompare(got, s.cfg.Secret) != 1 {
			s.authFailures.Inc()
			problem.WriteUncacheable(ctx, fasthttp.StatusForbidden, problem.Forbidden, "this origin serves its CDN only")
			return
		}
	}
	key, err := objectKey(rawPath)
	switch {
	case errors.Is(err, errBadPath):
		problem.WriteUncacheable(ctx, fasthttp.StatusBadRequest, problem.InvalidParameter, "malformed object path")
		return
	case err != nil:
		problem.WriteUncacheable(ctx, fasthttp.StatusNotFound, problem.NotFound, "no such object")
		return
	}

	rangeHeader := string(ctx.Request.Header.Peek(fasthttp.HeaderRange))
	cond := conditionalHeaders{
		ifMatch:           string(ctx.Request.Header.Peek(fasthttp.HeaderIfMatch)),
		ifNoneMatch:       string(ctx.Request.Header.Peek(fasthttp.HeaderIfNoneMatch)),
		ifModifiedSince:   string(ctx.Request.Header.Peek(fasthttp.HeaderIfModifiedSince)),
		ifUnmodifiedSince: string(ctx.Request.Header.Peek(fasthttp.HeaderIfUnmodifiedSince)),
		ifRange:           string(ctx.Request.Header.Peek(fasthttp.HeaderIfRange)),
		hasRange:          rangeHeader != "",
	}
	gzipped := isPlaylist(key) && acceptsGzip(ctx)

	// A CDN filling its cache asks for the whole object, or one range of
	// it, without validators: from a remote backend that is one GET,
	// where a Stat first would make it two requests and two round trips.
	var readAhead *rangeSpec
	if ctx.IsGet() && !cond.present() && !gzipped {
		if rangeHeader == "" {
			readAhead = &rangeSpec{first: 0, last: -1}
		} else if r, ok := singleRange(rangeHeader); ok {
			// The size will make of the header this same range
			// (FuzzParseRange); what is past the end, S3 refuses.
			readAhead = &r
		}
	}
	b, obj, file, body, err := s.find(key, readAhead)
	if file != nil {
		// Closed here unless handed to fasthttp as the body.
		defer func() {
			if file != nil {
				file.Close()
			}
		}()
	}
	if body != nil {
		defer func() {
			if body != nil {
				body.Close()
			}
		}()
	}
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			problem.WriteUncacheable(ctx, fasthttp.StatusNotFound, problem.NotFound, "no such object")
			return
		}
		s.log.Error("cannot stat object", "key", key, "err", err)
		ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, "5")
		problem.WriteUncacheable(ctx, fasthttp.StatusServiceUnavailable, problem.Unavailable, "storage is unavailable")
		return
	}

	h := &ctx.Response.Header
	tag, cacheControl := obj.ETag, "public, max-age=60"
	if hash, ok := contentHash(key); ok {
		tag, cacheControl = hash, s.immutable
	}
	etag := `"` + tag + `"`
	if isPlaylist(key) {
		cacheControl = s.playlist
		h.Add(fasthttp.HeaderVary, "Accept-Encoding") // after cors's Origin, if it echoed one
	}
	h.SetCanonical(hdrAcceptRanges, valBytes)
	h.SetCanonical(hdrCacheControl, []byte(cacheControl))
	if !obj.ModTime.IsZero() {
		var buf [len(http.TimeFormat)]byte
		h.SetCanonical(hdrLastModified, appendHTTPDate(buf[:0], obj.ModTime))
	}
	if name := ctx.QueryArgs().Peek("download"); len(name) > 0 {
		h.Set(fasthttp.HeaderContentDisposition, mime.FormatMediaType("attachment", map[string]string{"filename": string(name)}))
	}

	if gzipped && obj.Size <= maxPlaylistBytes {
		var rc io.ReadCloser = file
		if file == nil {
			c, cancel := context.WithTimeout(context.Background(), s.cfg.StorageTimeout)
			defer cancel()
			if rc, _, err = b.Open(c, key, 0, -1); err != nil {
				s.log.Error("cannot open playlist", "key", key, "err", err)
				problem.WriteUncacheable(ctx, fasthttp.StatusServiceUnavailable, problem.Unavailable, "storage is unavailable")
				return
			}
			defer rc.Close()
		}
		s.gzipPlaylist(ctx, rc, b, key, etag, cond.ifNoneMatch)
		return
	}
	h.SetCanonical(hdrETag, []byte(etag))

	switch cond.evaluate(etag, obj.ModTime) {
	case notModified:
		ctx.SetStatusCode(fasthttp.StatusNotModified)
		return
	case failed:
		problem.WriteUncacheable(ctx, fasthttp.StatusPreconditionFailed, problem.PreconditionFailed, "precondition failed")
		return
	case ignoreRange:
		rangeHeader = ""
	}
	h.SetContentType(contentType(key))

	// RFC 9110 §14.2: Range is defined for GET only; HEAD answers as a
	// GET without Range would.
	offset, length := int64(0), obj.Size
	if rangeHeader != "" && ctx.IsGet() {
		ranges, err := parseRange(rangeHeader, obj.Size)
		if errors.Is(err, errUnsatisfiable) {
			h.Set(fasthttp.HeaderContentRange, "bytes */"+strconv.FormatInt(obj.Size, 10))
			problem.WriteUncacheable(ctx, fasthttp.StatusRequestedRangeNotSatisfiable, problem.RangeNotSatisfiable, "range not satisfiable")
			return
		}
		if len(ranges) > 0 {
			if merged := coalesce(ranges); len(merged) == 1 {
				s.rangeRequests.Inc()
				offset, length = merged[0].start, merged[0].length
				ctx.SetStatusCode(fasthttp.StatusPartialContent)
				h.Set(fasthttp.HeaderContentRange, fmt.Sprintf("bytes %d-%d/%d", offset, offset+length-1, obj.Size))
			}
		}
	}

	if ctx.IsHead() {
		h.SetContentLength(int(length))
		return
	}
	if file != nil {
		if err := file.Narrow(offset, length); err != nil {
			s.log.Error("cannot read object", "key", key, "err", err)
			problem.WriteUncacheable(ctx, fasthttp.StatusServiceUnavailable, problem.Unavailable, "storage is unavailable")
			return
		}
		s.bytesServed[b.Name()].Add(int(length))
		body := &fileBody{lf: file, sendTimer: sendTimer{s.requests, start}}
		if fs, ok := ctx.Conn().(fileSender); ok && length > sendfileAbove {
			// The headers must be out of fasthttp's buffer before the
			// body goes to the socket past it.
			ctx.Response.ImmediateHeaderFlush = true
			fs.headersBeforeFile()
			body.to = fs
		}
		ctx.Response.SetBodyStream(body, int(length))
		file = nil // fasthttp closes it after sending
		return
	}
	if body == nil {
		if body, _, err = s.openRemote(b, key, offset, length); err != nil {
			s.log.Error("cannot open object", "key", key, "err", err)
			problem.WriteUncacheable(ctx, fasthttp.StatusServiceUnavailable, problem.Unavailable, "storage is unavailable")
			return
		}
	}
	s.bytesServed[b.Name()].Add(int(length))
	body.sendTimer = sendTimer{s.requests, start}
	ctx.Response.SetBodyStream(body, int(length))
	body = nil // fasthttp closes it after sending
}

// openRemote opens length bytes of key from offset (length < 0: to the
// end) in a remote backend. The body is streamed after the handler
// returns, so its reads get a context of their own, ended when fasthttp
// closes the stream; the server's WriteTimeout bounds the transfer, and
// StorageTimeout the wait for the backend's answer before it.
func (s *Server) openRemote(b storage.Backend, key string, offset, length int64) (*streamReader, storage.Object, error) {
	bodyCtx, endBody := context.WithCancel(context.Background())
	answered := time.AfterFunc(s.cfg.StorageTimeout, endBody)
	start := time.Now()
	rc, obj, err := b.Open(bodyCtx, key, offset, length)
	s.storageTime[b.Name()].UpdateDuration(start)
	if !answered.Stop() {
		// Too late: the body's context is already ended.
		if err == nil {
			rc.Close()
		}
		endBody()
		return nil, storage.Object{}, fmt.Errorf("storage: no answer for %s in %s", key, s.cfg.StorageTimeout)
	}
	if err != nil {
		endBody()
		return nil, storage.Object{}, err
	}
	return &streamReader{ReadCloser: rc, end: endBody}, obj, nil
}

// find locates key in the first backend that has it. A local file is
// opened once, here, and returned open, so that serving it costs one open
// (the local backend's Stat would open it too). From a remote backend,
// readAhead asks for those bytes in the request that finds the object;
// otherwise (or when the object ends before them) the object is only
// described, and read later as the request's range and validators
// decide.
func (s *Server) find(key string, readAhead *rangeSpec) (storage.Backend, storage.Object, *storage.LocalFile, *streamReader, error) {
	var err error
	for _, b := range s.backends {
		var obj storage.Object
		var file *storage.LocalFile
		var body *streamReader
		if l, ok := b.(*storage.Local); ok {
			start := time.Now()
			if file, obj, err = l.OpenFile(key); err == nil {
				if file.Reused() {
					s.keptFiles.Inc()
				} else {
					s.openedFiles.Inc()
				}
			}
			s.storageTime[b.Name()].UpdateDuration(start)
		} else if readAhead != nil {
			length := int64(-1)
			if readAhead.last >= 0 {
				length = readAhead.last - readAhead.first + 1
			}
			body, obj, err = s.openRemote(b, key, readAhead.first, length)
			if errors.Is(err, storage.ErrRangeNotSatisfiable) {
				obj, err = s.statRemote(b, key) // the 416 names the size
			}
		} else {
			obj, err = s.statRemote(b, key)
		}
		if err == nil {
			return b, obj, file, body, nil
		}
		if !errors.Is(err, storage.ErrNotFound) {
			return nil, storage.Object{}, nil, nil, err
		}
	}
	return nil, storage.Object{}, nil, nil, err
}

func (s *Server) statRemote(b storage.Backend, key string) (storage.Object, error) {
	c, cancel := context.WithTimeout(context.Background(), s.cfg.StorageTimeout)
	defer cancel()
	defer s.storageTime[b.Name()].UpdateDuration(time.Now())
	return b.Stat(c, key)
}

// gzipPlaylist answers with the compressed playlist (Apple's HLS
// authoring spec 10.1). The compressed bytes are another representation,
// so they get their own ETag; ranges of a playlist are not worth serving.
func (s *Server) gzipPlaylist(ctx *fasthttp.RequestCtx, rc io.Reader, b storage.Backend, key, etag, ifNoneMatch string) {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if _, err := io.Copy(zw, io.LimitReader(rc, maxPlaylistBytes)); err != nil {
		problem.WriteUncacheable(ctx, fasthttp.StatusServiceUnavailable, problem.Unavailable, "storage is unavailable")
		return
	}
	zw.Close()
	gzEtag := strings.TrimSuffix(etag, `"`) + `-gzip"`
	h := &ctx.Response.Header
	h.Set(fasthttp.HeaderETag, gzEtag)
	h.Set(fasthttp.HeaderContentEncoding, "gzip")
	h.SetContentType(contentType(key))
	if ifNoneMatch != "" && etagMatches(ifNoneMatch, gzEtag, false) {
		ctx.SetStatusCode(fasthttp.StatusNotModified)
		return
	}
	s.bytesServed[b.Name()].Add(buf.Len())
	ctx.SetBody(buf.Bytes())
}

// acceptsGzip reads Accept-Encoding (RFC 9110 §12.5.3): gzip, or *, with
// a non-zero weight.
func acceptsGzip(ctx *fasthttp.RequestCtx) bool {
	for part := range strings.SplitSeq(string(ctx.Request.Header.Peek(fasthttp.HeaderAcceptEncoding)), ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		coding = strings.TrimSpace(coding)
		if !strings.EqualFold(coding, "gzip") && coding != "*" {
			continue
		}
		for p := range strings.SplitSeq(params, ";") {
			if q, ok := strings.CutPrefix(strings.TrimSpace(p), "q="); ok {
				if w, err := strconv.ParseFloat(q, 64); err == nil && w == 0 {
					return false
				}
			}
		}
		return true
	}
	return false
}

// cors adds CORS headers to every answer, errors included, so a web
// player sees why it failed.
func (s *Server) cors(ctx *fasthttp.RequestCtx) {
	h := &ctx.Response.Header
	origin := ctx.Request.Header.Peek(fasthttp.HeaderOrigin)
	switch {
	case s.corsAny:
		h.SetCanonical(hdrAllowOrigin, valAnyOrigin)
	case len(origin) > 0 && slices.Contains(s.cfg.CORSOrigins, string(origin)):
		h.SetBytesV(fasthttp.HeaderAccessControlAllowOrigin, origin)
		h.Add(fasthttp.HeaderVary, "Origin")
	default:
		return
	}
	h.SetCanonical(hdrExposeHeaders, valExposed)
}

func (s *Server) preflight(ctx *fasthttp.RequestCtx) {
	h := &ctx.Response.Header
	h.Set(fasthttp.HeaderAccessControlAllowMethods, "GET, HEAD, OPTIONS")
	h.Set(fasthttp.HeaderAccessControlAllowHeaders, "Range, If-None-Match, If-Modified-Since, If-Range")
	h.Set(fasthttp.HeaderAccessControlMaxAge, "86400")
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}

// sendfileAbove is the body size above which a local file is sent with
// sendfile(2). A smaller one (init segments, small ranges) is read into
// fasthttp's write buffer behind its headers and leaves with them: one
// pread and one write, as many system calls as sendmsg and sendfile,
// without splicing pages for a few kilobytes. A larger one would not fit
// beside the headers, and would cost a read and a write per buffer.
const sendfileAbove = 3 << 10

// writeBufferSize is fasthttp's default, stated because sendfileAbove
// is chosen to fit in it with the headers (~500 bytes).
const writeBufferSize = 4 << 10

// fileSender is a connection that sends file sections itself (Linux:
// the sendConn the server's Listener accepts).
type fileSender interface {
	// headersBeforeFile marks the next write as headers a file follows.
	headersBeforeFile()
	sendFile(fd int, offset, length int64) (int64, error)
	// fileSent ends what headersBeforeFile started, sent or not.
	fileSent()
}

// fileBody is a local file's section as a response body. fasthttp calls
// WriteTo, which hands the section to the connection when it can send
// files, and copies it otherwise.
type fileBody struct {
	lf *storage.LocalFile
	to fileSender // nil: copy
	sendTimer
}

func (b *fileBody) Read(p []byte) (int, error) { return b.lf.Read(p) }

func (b *fileBody) WriteTo(w io.Writer) (int64, error) {
	if b.to == nil {
		return io.Copy(w, b.lf)
	}
	return b.to.sendFile(b.lf.Section())
}

func (b *fileBody) Close() error {
	if b.to != nil {
		b.to.fileSent()
	}
	b.sent()
	return b.lf.Close()
}

// streamReader ends the body's context when fasthttp closes the stream.
type streamReader struct {
	io.ReadCloser
	end context.CancelFunc
	sendTimer
}

func (r *streamReader) Close() error {
	err := r.ReadCloser.Close()
	r.end()
	r.sent()
	return err
}

// sendTimer records a streamed response's duration when fasthttp closes
// its body: after the last byte was sent, or the sending failed.
type sendTimer struct {
	route *ops.Route // nil: timed by the handler (a body it closes unsent)
	start time.Time
}

func (t *sendTimer) sent() {
	if t.route != nil {
		t.route.Took(t.start)
		t.route = nil
	}
}

// Response headers the origin sets on every answer, as names in the form
// fasthttp keeps them in ("Etag", not "ETag": Del and Peek normalize to
// it): SetCanonical then skips normalizing them again per request.
var (
	hdrAcceptRanges  = []byte("Accept-Ranges")
	hdrCacheControl  = []byte("Cache-Control")
	hdrLastModified  = []byte("Last-Modified")
	hdrETag          = []byte("Etag")
	hdrAllowOrigin   = []byte("Access-Control-Allow-Origin")
	hdrExposeHeaders = []byte("Access-Control-Expose-Headers")
	valBytes         = []byte("bytes")
	valAnyOrigin     = []byte("*")
	valExposed       = []byte("Content-Length, Content-Range, Accept-Ranges, ETag, Age")
)
