// Package player serves the player page (SPEC §11): plain HTML and
// JavaScript, with hls.js (1.7.4, light build, Apache-2.0; refresh with
// `make update-hls`) served from the binary rather than a third-party CDN.
package player

import (
	"embed"
	"encoding/json"
	"io/fs"
	"mime"
	"path"

	"github.com/fasthttp/router"
	"github.com/valyala/fasthttp"
)

//go:embed static
var static embed.FS

// Mount adds GET / and GET /player/{file} to r. signerURL is where the
// page sends players.
func Mount(r *router.Router, signerURL string) {
	files, _ := fs.Sub(static, "static")
	config, _ := json.Marshal(map[string]string{"signer": signerURL})
	serve := func(ctx *fasthttp.RequestCtx, name string) {
		b, err := fs.ReadFile(files, name)
		if err != nil {
			ctx.SetStatusCode(fasthttp.StatusNotFound)
			return
		}
		ct := mime.TypeByExtension(path.Ext(name))
		if ct == "" {
			ct = "text/plain; charset=utf-8"
		}
		ctx.SetContentType(ct)
		ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "public, max-age=300")
		ctx.Response.Header.Set("X-Content-Type-Options", "nosniff")
		ctx.SetBody(b)
	}
	r.GET("/", func(ctx *fasthttp.RequestCtx) { serve(ctx, "index.html") })
	r.GET("/player/config.json", func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store")
		ctx.SetBody(config)
	})
	r.GET("/player/{file}", func(ctx *fasthttp.RequestCtx) {
		name, _ := ctx.UserValue("file").(string)
		if name == "index.html" || path.Base(name) != name {
			ctx.SetStatusCode(fasthttp.StatusNotFound)
			return
		}
		serve(ctx, name)
	})
}
