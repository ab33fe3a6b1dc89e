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
	"github.com/playgate/playgate/bench/internal/objectset"
	"github.com/playgate/playgate/bench/internal/staticnginx"
	"github.com/playgate/playgate/deploy/edge"
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
	var atOrigin, paths objectRequests
	atOrigin.segmentShare, paths.segmentShare = *segments, *segments
	if secret != "" {
		atOrigin.header = func(r *fasthttp.Request) { r.Header.Set("X-Origin-Secret", secret) }
	}
	for _, t := range items {
		if t.ObjectKey != nil && *t.SizeBytes > 0 {
			p := "/" + *t.ObjectKey
			atOrigin.originals = append(atOrigin.originals, sizedURL{sign(p, ""), *t.SizeBytes})
			paths.originals = append(paths.originals, sizedURL{p, *t.SizeBytes})
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
				atOrigin.segments = append(atOrigin.segments, sign(p, dir))
				paths.segments = append(paths.segments, p)
			}
		}
	}
	if len(paths.originals) == 0 || len(paths.segments) == 0 {
		return errors.New("no originals or segments found: upload tracks and let them package first")
	}
	fmt.Fprintf(stderr, "%d originals, %d segments\n", len(paths.originals), len(paths.segments))

	client := objectClient(c.connections)
	runs := map[string]*load.Result{"origin": load.Run(ctx, c.config(), atOrigin.do(client, c.connections), progress(stderr, "origin"))}
	fmt.Fprintln(stderr)
	reports := []report{toReport("origin", runs["origin"])}
	if *nginxRoot != "" {
		root, err := filepath.Abs(*nginxRoot)
		if err != nil {
			return err
		}
		addr, stop, err := startNginx(root)
		if err != nil {
			return err
		}
		runs["nginx"] = load.Run(ctx, c.config(), paths.at("http://"+addr).do(client, c.connections), progress(stderr, "nginx"))
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

// startNginx serves root with nginx, the origin's ceiling.
func startNginx(root string) (string, func(), error) {
	bin, err := edge.Nginx()
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp("", "bench-nginx-")
	if err != nil {
		return "", nil, err
	}
	addr, _, stop, err := staticnginx.Start(bin, dir, root, 0)
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	return addr, func() { stop(); os.RemoveAll(dir) }, nil
}

// measureNginx measures nginx serving objects laid out as the origin
// stores them (bench/internal/objectset): the origin's ceiling without
// a running stack.
func measureNginx(ctx context.Context, c common, segmentShare float64, stderr io.Writer) (report, *load.Result, error) {
	dir, err := os.MkdirTemp("", "bench-objects-")
	if err != nil {
		return report{}, nil, err
	}
	defer os.RemoveAll(dir)
	// nginx's workers run as nobody: the tree must be readable by all.
	if err := os.Chmod(dir, 0o755); err != nil {
		return report{}, nil, err
	}
	set, err := objectset.Write(dir)
	if err != nil {
		return report{}, nil, err
	}
	addr, stop, err := startNginx(dir)
	if err != nil {
		return report{}, nil, err
	}
	defer stop()
	paths := objectRequests{segments: set.Segments, originals: []sizedURL{{set.Original, objectset.OriginalSize}}, segmentShare: segmentShare}
	res := load.Run(ctx, c.config(), paths.at("http://"+addr).do(objectClient(c.connections), c.connections), progress(stderr, "nginx"))
	fmt.Fprintln(stderr)
	return toReport("nginx", res), res, nil
}

// objectRequests is the origin's load as CDNs pull: whole HLS segments
// and 1 MiB ranges of originals at 1 MiB boundaries.
type objectRequests struct {
	segments     []string
	originals    []sizedURL
	segmentShare float64                 // of requests
	header       func(*fasthttp.Request) // adds the origin's secret; may be nil
}

type sizedURL struct {
	url  string
	size int64
}

// at is the same objects as paths on base.
func (o objectRequests) at(base string) objectRequests {
	out := objectRequests{segmentShare: o.segmentShare, header: o.header}
	for _, s := range o.segments {
		out.segments = append(out.segments, base+s)
	}
	for _, s := range o.originals {
		out.originals = append(out.originals, sizedURL{base + s.url, s.size})
	}
	return out
}

// objectClient sends the paths as given: path-form tokens carry %2F,
// which a "normalising" client would decode.
func objectClient(connections int) *fasthttp.Client {
	return &fasthttp.Client{MaxConnsPerHost: connections, ReadTimeout: 30 * time.Second, MaxResponseBodySize: 64 << 20,
		DisablePathNormalizing: true}
}

// do is the load for workers workers. Each worker draws from its own
// generator with a fixed seed, so two targets get the same requests in
// the same order.
func (o objectRequests) do(client *fasthttp.Client, workers int) load.Do {
	rngs := make([]*rand.Rand, workers)
	for i := range rngs {
		rngs[i] = rand.New(rand.NewPCG(uint64(i), 7))
	}
	return func(_ context.Context, w int) (int, error) {
		rng := rngs[w]
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		if o.header != nil {
			o.header(req)
		}
		if rng.Float64() < o.segmentShare {
			req.SetRequestURI(o.segments[rng.IntN(len(o.segments))])
		} else {
			orig := o.originals[rng.IntN(len(o.originals))]
			first := int64(0)
			if orig.size > 1<<20 {
				first = rng.Int64N(orig.size/(1<<20)) << 20
			}
			req.SetRequestURI(orig.url)
			req.Header.Set("Range", "bytes="+strconv.FormatInt(first, 10)+"-"+strconv.FormatInt(first+1<<20-1, 10))
		}
		if err := client.Do(req, resp); err != nil {
			return 0, err
		}
		return resp.StatusCode(), nil
	}
}
