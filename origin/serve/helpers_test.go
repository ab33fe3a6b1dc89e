package serve

import "github.com/valyala/fasthttp"

func newCtx(acceptEncoding string) *fasthttp.RequestCtx {
	ctx := &fasthttp.RequestCtx{}
	if acceptEncoding != "" {
		ctx.Request.Header.Set("Accept-Encoding", acceptEncoding)
	}
	return ctx
}
