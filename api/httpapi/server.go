// Package httpapi is the catalog API's HTTP surface (SPEC §3): routes,
// authentication, validation and the mapping of domain errors to RFC 9457
// problems. It holds no state of its own; everything lives in PostgreSQL
// and object storage, so any number of replicas can run.
package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/fasthttp/router"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/valyala/fasthttp"

	"github.com/playgate/playgate/api/auth"
	"github.com/playgate/playgate/api/catalog"
	"github.com/playgate/playgate/api/player"
	"github.com/playgate/playgate/api/purge"
	"github.com/playgate/playgate/internal/ops"
	"github.com/playgate/playgate/internal/problem"
	"github.com/playgate/playgate/origin/storage"
)

// MaxJSONBytes bounds a JSON request body.
const MaxJSONBytes = 64 << 10

// Config is the API's behaviour, validated by New.
type Config struct {
	// UploadMaxBytes bounds an audio upload (413 beyond it).
	UploadMaxBytes int64
	// UploadTimeout bounds the time to receive one upload.
	UploadTimeout time.Duration
	// UploadConcurrency bounds the uploads in progress at once (0: 8).
	// Each holds memory: an S3 multipart upload buffers its parts, ~50
	// MiB with the default part size. One more is refused with a 503.
	UploadConcurrency int
	// ReadTimeout bounds reading any other request.
	ReadTimeout time.Duration
	// SignerURL is the public base URL of the signer, for share links.
	SignerURL string
	// WriteBackend names the backend new uploads go to ("local" or "s3").
	WriteBackend string
	// PurgeAgainAfter is how long after a delete the track's CDN paths
	// are purged once more, by a job committed with the delete (with a
	// purge.TxPurger): the longest a URL signed before the delete keeps
	// working. A player holding one can refill the edge from the origin
	// until the track's objects are gone; this last purge leaves the edge
	// nothing of the track once no URL can fetch it again, whatever
	// happened to the api in between. Zero: none.
	PurgeAgainAfter time.Duration
}

// DefaultUploadConcurrency is Config.UploadConcurrency's default: eight
// S3 uploads buffer ~400 MiB.
const DefaultUploadConcurrency = 8

// Deps are the API's collaborators.
type Deps struct {
	Store    *catalog.Store
	Backends map[string]storage.Backend // by Backend.Name()
	Verifier *auth.Verifier
	Purger   purge.Purger
	// Enqueue queues HLS packaging of new audio; nil when HLS_STREAMING
	// is off.
	Enqueue catalog.Enqueue
	Log     *slog.Logger
	Metrics *metrics.Set
}

// Server serves the catalog API.
type Server struct {
	cfg      Config
	store    *catalog.Store
	backends map[string]storage.Backend
	write    storage.Backend
	verifier *auth.Verifier
	purger   purge.Purger
	enqueue  catalog.Enqueue
	log      *slog.Logger
	metrics  *metrics.Set
	handler  fasthttp.RequestHandler
	refuse   func(*fasthttp.RequestCtx, error) // the server's ErrorHandler

	uploadSlots chan struct{} // one per upload in progress

	uploadBytes    *metrics.Counter
	uploadsRefused *metrics.Counter
	orphanObjects  *metrics.Counter
}

// New validates cfg and deps and builds the server.
func New(cfg Config, d Deps) (*Server, error) {
	var errs []error
	if cfg.UploadMaxBytes <= 0 {
		errs = append(errs, errors.New("UPLOAD_MAX_BYTES must be positive"))
	}
	if cfg.UploadTimeout <= 0 {
		cfg.UploadTimeout = time.Hour
	}
	if cfg.UploadConcurrency < 0 {
		errs = append(errs, errors.New("UPLOAD_CONCURRENCY must not be negative"))
	}
	if cfg.UploadConcurrency == 0 {
		cfg.UploadConcurrency = DefaultUploadConcurrency
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = 30 * time.Second
	}
	if u, err := url.Parse(cfg.SignerURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("SIGNER_PUBLIC_URL %q must be an absolute http(s) URL", cfg.SignerURL))
	}
	cfg.SignerURL = strings.TrimRight(cfg.SignerURL, "/")
	write, ok := d.Backends[cfg.WriteBackend]
	if !ok {
		errs = append(errs, fmt.Errorf("TRACK_STORAGE_BACKEND %q is not configured", cfg.WriteBackend))
	}
	if d.Store == nil || d.Verifier == nil || d.Purger == nil || d.Log == nil || d.Metrics == nil {
		errs = append(errs, errors.New("httpapi: store, verifier, purger, log and metrics are required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	s := &Server{
		cfg: cfg, store: d.Store, backends: d.Backends, write: write, verifier: d.Verifier,
		purger: d.Purger, enqueue: d.Enqueue, log: d.Log, metrics: d.Metrics,
		uploadSlots:    make(chan struct{}, cfg.UploadConcurrency),
		uploadBytes:    d.Metrics.NewCounter("playgate_api_upload_bytes_total"),
		uploadsRefused: d.Metrics.NewCounter("playgate_api_uploads_refused_total"),
		orphanObjects:  d.Metrics.NewCounter("playgate_api_orphan_objects_total"),
	}
	d.Metrics.NewGauge("playgate_api_uploads_in_progress", func() float64 { return float64(len(s.uploadSlots)) })
	s.handler = s.routes()
	return s, nil
}

func (s *Server) routes() fasthttp.RequestHandler {
	r := router.New()
	r.NotFound = ops.NotFound
	r.MethodNotAllowed = ops.MethodNotAllowed
	rm := ops.NewRequestMetrics(s.metrics, "api")
	s.refuse = rm.Refusals(nil)
	handle := func(method, path string, h handler) {
		timeout := requestTimeout
		if path == "/v1/tracks/{id}/audio" {
			timeout = s.cfg.UploadTimeout
		}
		r.Handle(method, path, rm.Wrap(path, withContext(timeout, h)))
	}
	handle("POST", "/v1/tracks", s.createTrack)
	handle("GET", "/v1/tracks", s.listTracks)
	handle("GET", "/v1/tracks/{id}", s.getTrack)
	handle("PATCH", "/v1/tracks/{id}", s.patchTrack)
	handle("DELETE", "/v1/tracks/{id}", s.deleteTrack)
	handle("PUT", "/v1/tracks/{id}/audio", s.putAudio)
	handle("POST", "/v1/tracks/{id}/shares", s.createShare)
	handle("DELETE", "/v1/shares/{id}", s.revokeShare)
	handle("PUT", "/v1/tracks/{id}/licenses/{user}", s.grantLicense)
	handle("DELETE", "/v1/tracks/{id}/licenses/{user}", s.revokeLicense)
	ops.Mount(r, s.metrics, s.store.Ping)
	player.Mount(r, s.cfg.SignerURL)
	return ops.Recover(s.log, r.Handler)
}

// requestTimeout bounds the database and storage work of one request.
const requestTimeout = 30 * time.Second

// handler is a route's handler. c carries the request's deadline into
// database and storage calls; ctx is only for the request and response.
// fasthttp recycles ctx once the handler returns, while libraries may
// still touch a context they were given (the S3 SDK's transport does),
// so ctx itself is never passed down as a context.Context.
type handler func(c context.Context, ctx *fasthttp.RequestCtx)

func withContext(timeout time.Duration, h handler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		c, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		h(c, ctx)
	}
}

// Handler is the API's root handler.
func (s *Server) Handler() fasthttp.RequestHandler { return s.handler }

// HTTPServer returns a fasthttp server configured for the API: request
// bodies stream (an upload is never held in memory), uploads get a long
// read timeout and everything else a short one.
func (s *Server) HTTPServer() *fasthttp.Server {
	return &fasthttp.Server{
		Handler:           s.handler,
		Name:              "playgate-api",
		StreamRequestBody: true,
		// Bodies up to this size are read before the handler runs; larger
		// ones are streamed to it. The handlers enforce their own limits.
		MaxRequestBodySize:           MaxJSONBytes,
		DisablePreParseMultipartForm: true,
		ReadTimeout:                  s.cfg.ReadTimeout,
		WriteTimeout:                 time.Minute,
		IdleTimeout:                  2 * time.Minute,
		ErrorHandler:                 s.refuse,
		Logger:                       ops.FastHTTPLog(s.log),
		HeaderReceived: func(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
			if h.IsPut() && strings.HasSuffix(string(h.RequestURI()), "/audio") {
				return fasthttp.RequestConfig{ReadTimeout: s.cfg.UploadTimeout}
			}
			return fasthttp.RequestConfig{}
		},
		CloseOnShutdown: true,
	}
}

// caller is who sent a request: nil claims for anonymous readers.
func (s *Server) caller(ctx *fasthttp.RequestCtx) (*auth.Claims, error) {
	tok, err := auth.BearerToken(string(ctx.Request.Header.Peek(fasthttp.HeaderAuthorization)))
	if errors.Is(err, auth.ErrNoToken) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return s.verifier.Verify(tok)
}

// requireCaller authenticates a write; it answers 401 itself and returns
// nil when the request carries no valid token.
func (s *Server) requireCaller(ctx *fasthttp.RequestCtx) *auth.Claims {
	c, err := s.caller(ctx)
	if err == nil && c == nil {
		err = auth.ErrNoToken
	}
	if err != nil {
		ctx.Response.Header.Set(fasthttp.HeaderWWWAuthenticate, `Bearer realm="playgate"`)
		problem.Write(ctx, fasthttp.StatusUnauthorized, problem.Unauthorized, "a valid bearer token is required")
		return nil
	}
	return c
}

// pathID parses a UUID path parameter, answering 400 when malformed.
func pathID(ctx *fasthttp.RequestCtx, name string) (uuid.UUID, bool) {
	raw, _ := ctx.UserValue(name).(string)
	id, err := catalog.ParseID(raw)
	if err != nil {
		problem.Write(ctx, fasthttp.StatusBadRequest, problem.InvalidID, err.Error())
		return uuid.Nil, false
	}
	return id, true
}

// ownedTrack loads a track that caller may modify. It answers the request
// itself when the answer is no: 404 for a missing track and for a private
// one of someone else (no existence oracle), 403 for a visible one.
func (s *Server) ownedTrack(c context.Context, ctx *fasthttp.RequestCtx, caller *auth.Claims, id uuid.UUID) (catalog.Track, bool) {
	t, err := s.store.TrackForUpdate(c, id)
	if err != nil {
		s.fail(ctx, err)
		return catalog.Track{}, false
	}
	if t.OwnerID != caller.Subject {
		if t.Visibility == catalog.Private {
			s.fail(ctx, catalog.ErrNotFound)
		} else {
			problem.Write(ctx, fasthttp.StatusForbidden, problem.Forbidden, "only the track's owner may change it")
		}
		return catalog.Track{}, false
	}
	return t, true
}

// decodeJSON reads a JSON body strictly: the media type must be JSON,
// unknown fields and trailing data are rejected, and the body is bounded.
func decodeJSON(ctx *fasthttp.RequestCtx, dst any) bool {
	if mt, _, err := mime.ParseMediaType(string(ctx.Request.Header.ContentType())); err != nil ||
		(mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		problem.Write(ctx, fasthttp.StatusUnsupportedMediaType, problem.UnsupportedMediaType, "send application/json")
		return false
	}
	if err := decodeStrict(bodyReader(ctx), dst); err != nil {
		if errors.Is(err, errBodyTooLarge) {
			problem.Write(ctx, fasthttp.StatusRequestEntityTooLarge, problem.TooLarge,
				fmt.Sprintf("a JSON body is at most %d bytes", MaxJSONBytes))
		} else {
			problem.Write(ctx, fasthttp.StatusBadRequest, problem.InvalidBody, err.Error())
		}
		return false
	}
	return true
}

// decodeValid is decodeJSON followed by the value's own validation; it
// answers 400 itself with every problem found.
func decodeValid(ctx *fasthttp.RequestCtx, dst interface{ Validate() error }) bool {
	if !decodeJSON(ctx, dst) {
		return false
	}
	if err := dst.Validate(); err != nil {
		problem.Write(ctx, fasthttp.StatusBadRequest, problem.InvalidBody, err.Error())
		return false
	}
	return true
}

var errBodyTooLarge = errors.New("body too large")

func bodyReader(ctx *fasthttp.RequestCtx) io.Reader {
	if r := ctx.RequestBodyStream(); r != nil {
		return r
	}
	return bytes.NewReader(ctx.PostBody())
}

// decodeStrict decodes exactly one JSON value of at most MaxJSONBytes.
func decodeStrict(r io.Reader, dst any) error {
	lr := &io.LimitedReader{R: r, N: MaxJSONBytes + 1}
	dec := json.NewDecoder(lr)
	dec.DisallowUnknownFields()
	err := dec.Decode(dst)
	if lr.N <= 0 {
		return errBodyTooLarge
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("the body is empty")
		}
		return fmt.Errorf("invalid JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if lr.N <= 0 {
			return errBodyTooLarge
		}
		return errors.New("invalid JSON: data after the object")
	}
	return nil
}

func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		problem.Write(ctx, fasthttp.StatusInternalServerError, problem.Internal, "cannot encode the response")
		return
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(body)
}

func writeTrack(ctx *fasthttp.RequestCtx, status int, t catalog.Track) {
	ctx.Response.Header.Set(fasthttp.HeaderETag, strconv.Quote(strconv.FormatInt(t.Version, 10)))
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store")
	writeJSON(ctx, status, t)
}

// databaseUnreachable reports whether err says the database could not be
// reached, went away mid-request, or is shutting down or starting up,
// rather than that it refused the statement (any other *pgconn.PgError,
// which is a bug here).
func databaseUnreachable(err error) bool {
	var connect *pgconn.ConnectError
	var network net.Error
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// Class 08, connection exception; 57P01-57P03: administrator or
		// crash shutdown, cannot connect now.
		return strings.HasPrefix(pgErr.Code, "08") || pgErr.Code == "57P01" || pgErr.Code == "57P02" || pgErr.Code == "57P03"
	}
	return errors.As(err, &connect) || errors.As(err, &network) || errors.Is(err, io.ErrUnexpectedEOF) ||
		pgconn.SafeToRetry(err)
}

// fail maps a domain error to a problem in one place.
func (s *Server) fail(ctx *fasthttp.RequestCtx, err error) {
	switch {
	case errors.Is(err, catalog.ErrNotFound), errors.Is(err, storage.ErrNotFound):
		problem.Write(ctx, fasthttp.StatusNotFound, problem.NotFound, "no such track")
	case errors.Is(err, catalog.ErrVersionMismatch):
		problem.Write(ctx, fasthttp.StatusPreconditionFailed, problem.PreconditionFailed,
			"the track changed since the version in If-Match; fetch it again")
	case errors.Is(err, catalog.ErrConflict):
		problem.Write(ctx, fasthttp.StatusConflict, problem.Conflict, "the track changed during the request; retry")
	case errors.Is(err, context.DeadlineExceeded):
		problem.Write(ctx, fasthttp.StatusServiceUnavailable, problem.Unavailable, "timed out")
	case databaseUnreachable(err):
		// An outage, not a bug: the client retries.
		s.log.Warn("database unreachable", "method", string(ctx.Method()), "path", string(ctx.Path()), "err", err)
		ctx.Response.Header.Set("Retry-After", "5")
		problem.Write(ctx, fasthttp.StatusServiceUnavailable, problem.Unavailable, "the catalogue is unavailable; retry")
	default:
		s.log.Error("request failed", "method", string(ctx.Method()), "path", string(ctx.Path()), "err", err)
		problem.Write(ctx, fasthttp.StatusInternalServerError, problem.Internal, "internal error")
	}
}
