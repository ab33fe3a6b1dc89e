package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/playgate/playgate/api/hls/m3u8"
	"github.com/playgate/playgate/bench/internal/load"
	"github.com/playgate/playgate/bench/internal/staticnginx"
	"github.com/playgate/playgate/signer/token"
)

// originCmd loads the origin like CDN pulls: 1 MiB Range reads of
// originals and whole HLS segments, from the public catalogue.
func originCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c common
	fs := flag.NewFlagSet("bench origin", flag.ContinueOnError)
	c.register(fs)
	api := fs.String("api", "http://127.0.0.1:8080", "the catalog API, to find objects")
	origin := fs.String("origin", "http://127.0.0.1:8082", "the origin")
	segments := fs.Float64("segments", 0.5, "fraction of requests for HLS segments (the rest are 1 MiB ranges)")
	nginxRoot := fs.String("nginx-root", "", "the origin's STORAGE_DIR: also serve it with nginx and measure the same requests as the ceiling")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// ORIGIN_AUTH=token: sign as the signer does; header: the secret.
	// Unset, the key wins when both are there (the origin's own default
	// without a CDN); the stack behind an edge answers only to the secret.
	var signer token.Signer
	if k := getenv("ORIGIN_TOKEN_KEY"); k != "" && getenv("ORIGIN_AUTH") != "header" {
		s, err := token.NewBunny(token.BunnyHMAC, *origin, []byte(k))
		if err != nil {
			return err
		}
		signer = s
	}
	secret := getenv("ORIGIN_SECRET")
	if signer == nil && secret == "" {
		return errors.New("set ORIGIN_TOKEN_KEY (ORIGIN_AUTH=token) or ORIGIN_SECRET (ORIGIN_AUTH=header)")
	}
	sign := func(p string, dir string) string {
		if signer == nil {
			return *origin + p
		}
		r := token.Request{Path: p, Expires: time.Now().Add(2 * time.Hour).Unix(), TokenPath: dir, PathForm: dir != ""}
		u, _ := signer.AppendURL(nil, &r)
		return string(u)
	}
	get := func(u string) ([]byte, error) {
		req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
		if secret != "" {
			req.Header.Set("X-Origin-Secret", secret)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
		}
		return io.ReadAll(resp.Body)
	}

	// The objects: originals with their sizes, and every segment of the
	// public catalogue.
	items, err := publicTracks(ctx, *api)
	if err != nil {
		return err
	}
	// Each object is kept both as the origin's signed URL and as its bare
	// path, which the nginx ceiling serves from the same directory.
	type original struct {
		url, path string
		size      int64
	}
	type segment struct{ url, path string }
	var originals []original
	var segs []segment
	for _, t := range items {
		if t.ObjectKey != nil && *t.SizeBytes > 0 {
			originals = append(originals, original{sign("/"+*t.ObjectKey, ""), "/" + *t.ObjectKey, *t.SizeBytes})
		}
		if t.HLSPrefix == nil {
			continue
		}
		dir := "/" + *t.HLSPrefix + "/"
		raw, err := get(sign(dir+"master.m3u8", dir))
		if err != nil {
			return err
		}
		master, err := m3u8.ParseMaster(raw)
		if err != nil {
			return err
		}
		for _, v := range master.Variants {
			raw, err := get(sign(dir+v.URI, dir))
			if err != nil {
				return err
			}
			media, err := m3u8.ParseMedia(raw)
			if err != nil {
				return err
			}
			for _, s := range media.Segments {
				p := dir + path.Dir(v.URI) + "/" + s.URI
				segs = append(segs, segment{sign(p, dir), p})
			}
		}
	}
	if len(originals) == 0 || len(segs) == 0 {
		return errors.New("no originals or segments found: upload tracks and let them package first")
	}
	fmt.Fprintf(stderr, "%d originals, %d segments\n", len(originals), len(segs))

	// Path-form tokens carry %2F in the path: the client must send the
	// path as signed, not "normalised".
	client := &fasthttp.Client{MaxConnsPerHost: c.connections, ReadTimeout: 30 * time.Second, MaxResponseBodySize: 64 << 20,
		DisablePathNormalizing: true}
	rngs := make([]*rand.Rand, c.connections)
	// nginx == "" loads the origin; otherwise nginx at that address, with
	// the same sequence of requests (the same seeds) minus the auth.
	requests := func(nginx string) load.Do {
		for i := range rngs {
			rngs[i] = rand.New(rand.NewPCG(uint64(i), 7))
		}
		return func(_ context.Context, w int) (int, error) {
			rng := rngs[w]
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			if secret != "" && nginx == "" {
				req.Header.Set("X-Origin-Secret", secret)
			}
			if rng.Float64() < *segments {
				s := segs[rng.IntN(len(segs))]
				req.SetRequestURI(pick(nginx, s.url, s.path))
			} else {
				o := originals[rng.IntN(len(originals))]
				first := int64(0)
				if o.size > 1<<20 {
					first = rng.Int64N(o.size/(1<<20)) << 20
				}
				req.SetRequestURI(pick(nginx, o.url, o.path))
				req.Header.Set("Range", "bytes="+strconv.FormatInt(first, 10)+"-"+strconv.FormatInt(first+1<<20-1, 10))
			}
			if err := client.Do(req, resp); err != nil {
				return 0, err
			}
			return resp.StatusCode(), nil
		}
	}
	runs := map[string]*load.Result{"origin": load.Run(ctx, c.config(), requests(""), progress(stderr, "origin"))}
	fmt.Fprintln(stderr)
	reports := []report{toReport("origin", runs["origin"])}
	if *nginxRoot != "" {
		bin, err := staticnginx.Find()
		if err != nil {
			return err
		}
		dir, err := os.MkdirTemp("", "bench-nginx-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		root, err := filepath.Abs(*nginxRoot)
		if err != nil {
			return err
		}
		addr, _, stop, err := staticnginx.Start(bin, dir, root)
		if err != nil {
			return err
		}
		runs["nginx"] = load.Run(ctx, c.config(), requests("http://"+addr), progress(stderr, "nginx"))
		stop()
		fmt.Fprintln(stderr)
		reports = append(reports, toReport("nginx", runs["nginx"]))
	}
	printTable(stdout, reports)
	if n := runs["nginx"]; n != nil && n.RPS() > 0 {
		fmt.Fprintf(stdout, "\norigin / nginx = %.2f  (SPEC §12 target: >= 1.0)\n", runs["origin"].RPS()/n.RPS())
	}
	if err := htmlReport(c.htmlOut, "bench origin", runs, reports); err != nil {
		return err
	}
	return writeJSON(c.jsonOut, reports)
}

// pick is the origin's signed URL, or the same object's path on nginx.
func pick(nginx, signedURL, path string) string {
	if nginx == "" {
		return signedURL
	}
	return nginx + path
}
