package playback_test

import (
	"net"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/playgate/playgate/api/catalog"
)

func newCtx(uri string) *fasthttp.RequestCtx {
	var req fasthttp.Request
	req.SetRequestURI(uri)
	ctx := &fasthttp.RequestCtx{}
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(203, 0, 113, 7), Port: 40000}, nil)
	return ctx
}

// hot returns the signer's handler and a request for a public track that
// is already cached.
func hot(tb testing.TB) (fasthttp.RequestHandler, *fasthttp.RequestCtx) {
	h := newHarness(tb, options{})
	tr := h.track("alice", catalog.Public, 0, false)
	ctx := newCtx("/v1/tracks/" + tr.ID.String() + "/stream")
	handler := h.srv.Handler()
	handler(ctx) // the miss that fills the cache
	require.Equal(tb, fasthttp.StatusFound, ctx.Response.StatusCode(), "%s", ctx.Response.Body())
	ctx.Response.Reset()
	handler(ctx)
	require.Equal(tb, fasthttp.StatusFound, ctx.Response.StatusCode())
	return handler, ctx
}

// bare302 is the ceiling the signer is measured against (SPEC §12): a
// fasthttp handler that answers a constant redirect.
func bare302(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.SetStatusCode(fasthttp.StatusFound)
	ctx.Response.Header.Set(fasthttp.HeaderLocation, "https://zone.b-cdn.test/tracks/x/y.mp3?token=HS256-abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ&expires=2000000000")
}

// BenchmarkHandler calls the handlers directly: the CPU cost of one play.
func BenchmarkHandler(b *testing.B) {
	b.Run("signer-cache-hot", func(b *testing.B) {
		handler, ctx := hot(b)
		b.ReportAllocs()
		for b.Loop() {
			ctx.Response.Reset()
			handler(ctx)
		}
	})
	b.Run("bare302", func(b *testing.B) {
		ctx := newCtx("/v1/tracks/0190a0b4-0000-7000-8000-000000000001/stream")
		b.ReportAllocs()
		for b.Loop() {
			ctx.Response.Reset()
			bare302(ctx)
		}
	})
}

// BenchmarkServer goes through a real fasthttp server and client over an
// in-memory listener, many requests in flight: the ratio of the two is
// the SPEC §12 target measured without the network.
func BenchmarkServer(b *testing.B) {
	run := func(b *testing.B, handler fasthttp.RequestHandler, uri string) {
		ln := fasthttputil.NewInmemoryListener()
		srv := &fasthttp.Server{Handler: handler}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Shutdown()
		client := &fasthttp.Client{Dial: func(string) (net.Conn, error) { return ln.Dial() }, MaxConnsPerHost: 64}
		b.ReportAllocs()
		b.SetParallelism(32)
		b.RunParallel(func(pb *testing.PB) {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("http://signer" + uri)
			for pb.Next() {
				if err := client.Do(req, resp); err != nil || resp.StatusCode() != fasthttp.StatusFound {
					b.Errorf("status %d, err %v", resp.StatusCode(), err)
					return
				}
			}
		})
	}
	b.Run("signer-cache-hot", func(b *testing.B) {
		handler, ctx := hot(b)
		run(b, handler, string(ctx.RequestURI()))
	})
	b.Run("bare302", func(b *testing.B) {
		run(b, bare302, "/v1/tracks/0190a0b4-0000-7000-8000-000000000001/stream")
	})
}
