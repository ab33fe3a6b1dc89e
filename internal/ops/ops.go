// Package ops is the operational surface every playgate service shares:
// GET /healthz (alive), GET /readyz (dependencies reachable), GET /metrics
// (Prometheus text from a per-server metrics.Set), per-route request
// metrics, and panic recovery for fasthttp handlers.
package ops

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/fasthttp/router"
	"github.com/valyala/fasthttp"

	"github.com/playgate/playgate/internal/problem"
)

// Check reports whether one dependency is reachable.
type Check func(ctx context.Context) error

// Mount adds /healthz, /readyz and /metrics to r. ready may be nil for a
// service without dependencies.
func Mount(r *router.Router, set *metrics.Set, ready Check) {
	r.GET("/healthz", func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("text/plain; charset=utf-8")
		ctx.SetBodyString("ok\n")
	})
	r.GET("/readyz", func(ctx *fasthttp.RequestCtx) {
		if ready != nil {
			c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err := ready(c); err != nil {
				problem.Write(ctx, fasthttp.StatusServiceUnavailable, problem.Unavailable, "not ready: "+err.Error())
				return
			}
		}
		ctx.SetContentType("text/plain; charset=utf-8")
		ctx.SetBodyString("ready\n")
	})
	r.GET("/metrics", func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("text/plain; version=0.0.4; charset=utf-8")
		set.WritePrometheus(ctx)
		metrics.WriteProcessMetrics(ctx)
	})
}

// RequestMetrics counts a service's requests by route and status and
// records their durations by route:
//
//	playgate_<service>_requests_total{route="…",status="…"}
//	playgate_<service>_request_duration_seconds{route="…"}
type RequestMetrics struct {
	set     *metrics.Set
	service string
}

// NewRequestMetrics registers nothing until routes are wrapped.
func NewRequestMetrics(set *metrics.Set, service string) *RequestMetrics {
	return &RequestMetrics{set: set, service: service}
}

// Route is one route's instruments: its requests by status and their
// durations.
type Route struct {
	m        *RequestMetrics
	name     string
	duration *metrics.PrometheusHistogram
	byStatus [600]atomic.Pointer[metrics.Counter]
}

// Route registers route's duration histogram; its counters by status are
// registered as statuses are first seen.
func (m *RequestMetrics) Route(route string) *Route {
	return &Route{m: m, name: route, duration: m.set.GetOrCreatePrometheusHistogram(
		fmt.Sprintf(`playgate_%s_request_duration_seconds{route=%q}`, m.service, route))}
}

// Count counts one request answered with status. After a status has been
// seen once, counting it allocates nothing, so the signer's hot path
// stays allocation-free.
func (r *Route) Count(status int) {
	if status < 100 || status >= len(r.byStatus) {
		status = 0
	}
	c := r.byStatus[status].Load()
	if c == nil {
		c = r.m.set.GetOrCreateCounter(fmt.Sprintf(`playgate_%s_requests_total{route=%q,status="%d"}`, r.m.service, r.name, status))
		r.byStatus[status].Store(c)
	}
	c.Inc()
}

// Took records the duration of a request that started at start.
func (r *Route) Took(start time.Time) { r.duration.UpdateDuration(start) }

// Wrap instruments h as route, timing each request until h returns:
// fasthttp then sends the answer h built, all of it unless its body is a
// stream. A handler that streams bodies counts and times its own
// requests with a Route, as the origin does.
func (m *RequestMetrics) Wrap(route string, h fasthttp.RequestHandler) fasthttp.RequestHandler {
	r := m.Route(route)
	return func(ctx *fasthttp.RequestCtx) {
		start := time.Now()
		h(ctx)
		r.Took(start)
		r.Count(ctx.Response.StatusCode())
	}
}

// Recover turns a panic in h into a 500 problem and a log line: fasthttp
// itself does not recover, and one bad request must not kill the server.
func Recover(log *slog.Logger, h fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		defer func() {
			if p := recover(); p != nil {
				log.Error("handler panic", "panic", fmt.Sprint(p), "path", string(ctx.Path()), "stack", string(debug.Stack()))
				// The handler may have begun to describe its answer (its
				// validators, how long it may be cached): no cache may keep
				// the error in its place.
				problem.WriteUncacheable(ctx, fasthttp.StatusInternalServerError, problem.Internal, "internal error")
			}
		}()
		h(ctx)
	}
}

// NotFound and MethodNotAllowed answer the router's misses with problems.
func NotFound(ctx *fasthttp.RequestCtx) {
	problem.Write(ctx, fasthttp.StatusNotFound, problem.NotFound, "no such route")
}

// MethodNotAllowed is the router's answer to a known path with another
// method; the router has already set Allow.
func MethodNotAllowed(ctx *fasthttp.RequestCtx) {
	problem.Write(ctx, fasthttp.StatusMethodNotAllowed, problem.MethodNotAllowed, "method not allowed")
}

// answerRefusal answers requests fasthttp could not parse (oversized or
// malformed) with a problem instead of its plain-text default.
func answerRefusal(ctx *fasthttp.RequestCtx, err error) {
	switch err.(type) {
	case *fasthttp.ErrSmallBuffer:
		problem.Write(ctx, fasthttp.StatusRequestHeaderFieldsTooLarge, problem.TooLarge, "request headers too large")
		return
	}
	if err == fasthttp.ErrBodyTooLarge {
		problem.Write(ctx, fasthttp.StatusRequestEntityTooLarge, problem.TooLarge, "request body too large")
		return
	}
	problem.Write(ctx, fasthttp.StatusBadRequest, problem.InvalidBody, "malformed request")
}

// Refusals is a server's ErrorHandler: it answers what fasthttp refuses
// before any route sees a request (headers beyond the read buffer, a
// body beyond the limit, a malformed request) with a problem, after
// decorate has added what the service's other answers carry (nil:
// nothing), and counts the answer as route "refused". Refusals are not
// timed: fasthttp stamps a request's time only once its head is read.
func (m *RequestMetrics) Refusals(decorate fasthttp.RequestHandler) func(*fasthttp.RequestCtx, error) {
	refused := &Route{m: m, name: "refused"}
	return func(ctx *fasthttp.RequestCtx, err error) {
		if decorate != nil {
			decorate(ctx)
		}
		answerRefusal(ctx, err)
		refused.Count(ctx.Response.StatusCode())
	}
}

// FastHTTPLog makes log the destination of what fasthttp reports itself:
// a connection turned away at the server's Concurrency limit, errors
// accepting connections. Its default prints plain text to standard
// error, among the services' JSON lines.
func FastHTTPLog(log *slog.Logger) fasthttp.Logger { return fasthttpLog{log} }

type fasthttpLog struct{ log *slog.Logger }

func (l fasthttpLog) Printf(format string, args ...any) {
	l.log.Warn(fmt.Sprintf(format, args...), "from", "fasthttp")
}

// Serve runs srv on addr until ctx ends, then shuts it down gracefully:
// in-flight requests get up to grace to finish.
func Serve(ctx context.Context, srv *fasthttp.Server, ln net.Listener, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := srv.ShutdownWithContext(sctx)
	// Shutdown closes only the listeners Serve has registered; if ctx
	// ended before the goroutine got there, closing ln is what stops it.
	ln.Close()
	if serveErr := <-errc; serveErr != nil && err == nil && !errors.Is(serveErr, net.ErrClosed) {
		err = serveErr
	}
	if err != nil {
		return fmt.Errorf("cannot shut down cleanly: %w", err)
	}
	return nil
}

// NewLogger builds the JSON logger every binary uses.
func NewLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("LOG_LEVEL %q is not debug, info, warn or error", level)
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})), nil
}
