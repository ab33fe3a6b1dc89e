package serve

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/playgate/playgate/internal/s3test"
	"github.com/playgate/playgate/origin/storage"
)

// BenchmarkObject is the origin's own work for one request, without the
// network: routing, key checks, the kept file (with the fstat that
// rechecks it on every reuse, and without, as ORIGIN_OPEN_FILES_VALID's
// default lets it), preconditions and headers (HEAD), and with a 100 KB
// segment's body copied out (GET; on a real connection that is
// sendfile's, in the kernel). make bench-origin measures the whole server
// against nginx.
func BenchmarkObject(b *testing.B) {
	segment := make([]byte, 100_000)
	_, _ = rand.Read(segment)
	const key = "hls/0190a0b4-0000-7000-8000-000000000001/p1/128k/0123456789abcdef0123456789abcdef.m4s"
	for _, recheck := range []time.Duration{0, time.Second} {
		backend, err := storage.NewLocal(b.TempDir(), storage.KeepOpen(16), storage.RecheckKeptAfter(recheck))
		require.NoError(b, err)
		defer backend.Close()
		_, err = backend.Put(context.Background(), key, bytes.NewReader(segment), "")
		require.NoError(b, err)
		srv, err := New(Config{Auth: AuthNone, CORSOrigins: []string{"*"}}, []storage.Backend{backend},
			slog.New(slog.NewTextHandler(io.Discard, nil)), metrics.NewSet())
		require.NoError(b, err)

		for _, method := range []string{fasthttp.MethodHead, fasthttp.MethodGet} {
			b.Run(fmt.Sprintf("%s/recheck=%v", method, recheck), func(b *testing.B) {
				var ctx fasthttp.RequestCtx
				b.ReportAllocs()
				for b.Loop() {
					ctx.Request.Reset()
					ctx.Response.Reset()
					ctx.Request.Header.SetMethod(method)
					ctx.Request.SetRequestURI("/" + key)
					srv.handler(&ctx)
					if ctx.Response.StatusCode() != fasthttp.StatusOK {
						b.Fatalf("status %d", ctx.Response.StatusCode())
					}
					if _, err := ctx.Response.WriteTo(io.Discard); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkObjectS3 is a CDN's pull of a 100 KB segment through the S3
// backend (versitygw on loopback): whole, which is one GET, against the
// same pull with a validator that does not match, which describes the
// object first (HEAD, then GET). Against a real bucket each request is a
// round trip of milliseconds, not the loopback's tens of microseconds.
func BenchmarkObjectS3(b *testing.B) {
	segment := make([]byte, 100_000)
	_, _ = rand.Read(segment)
	const key = "hls/0190a0b4-0000-7000-8000-000000000001/p1/128k/0123456789abcdef0123456789abcdef.m4s"
	backend := s3test.Start(b).NewBucket(b)
	_, err := backend.Put(context.Background(), key, bytes.NewReader(segment), "")
	require.NoError(b, err)
	srv, err := New(Config{Auth: AuthNone, CORSOrigins: []string{"*"}}, []storage.Backend{backend},
		slog.New(slog.NewTextHandler(io.Discard, nil)), metrics.NewSet())
	require.NoError(b, err)
	for _, c := range []struct{ name, ifNoneMatch string }{{"whole", ""}, {"described-first", `"other"`}} {
		b.Run(c.name, func(b *testing.B) {
			var ctx fasthttp.RequestCtx
			b.ReportAllocs()
			for b.Loop() {
				ctx.Request.Reset()
				ctx.Response.Reset()
				ctx.Request.SetRequestURI("/" + key)
				if c.ifNoneMatch != "" {
					ctx.Request.Header.Set(fasthttp.HeaderIfNoneMatch, c.ifNoneMatch)
				}
				srv.handler(&ctx)
				if ctx.Response.StatusCode() != fasthttp.StatusOK {
					b.Fatalf("status %d", ctx.Response.StatusCode())
				}
				if _, err := ctx.Response.WriteTo(io.Discard); err != nil {
					b.Fatal(err)
				}
				ctx.Response.Reset() // closes the body stream
			}
		})
	}
}

// BenchmarkObjectParallel is BenchmarkObject's HEAD of a kept file from
// every P at once: what the handler's shared state (the kept files, the
// metrics) costs when requests run side by side.
func BenchmarkObjectParallel(b *testing.B) {
	const key = "hls/0190a0b4-0000-7000-8000-000000000001/p1/128k/0123456789abcdef0123456789abcdef.m4s"
	backend, err := storage.NewLocal(b.TempDir(), storage.KeepOpen(16), storage.RecheckKeptAfter(time.Second))
	require.NoError(b, err)
	defer backend.Close()
	_, err = backend.Put(context.Background(), key, bytes.NewReader(make([]byte, 100_000)), "")
	require.NoError(b, err)
	srv, err := New(Config{Auth: AuthNone, CORSOrigins: []string{"*"}}, []storage.Backend{backend},
		slog.New(slog.NewTextHandler(io.Discard, nil)), metrics.NewSet())
	require.NoError(b, err)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var ctx fasthttp.RequestCtx
		for pb.Next() {
			ctx.Request.Reset()
			ctx.Response.Reset()
			ctx.Request.Header.SetMethod(fasthttp.MethodHead)
			ctx.Request.SetRequestURI("/" + key)
			srv.handler(&ctx)
			if ctx.Response.StatusCode() != fasthttp.StatusOK {
				b.Errorf("status %d", ctx.Response.StatusCode())
				return
			}
		}
	})
}
