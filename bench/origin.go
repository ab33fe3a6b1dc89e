package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"path"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/playgate/playgate/api/hls/m3u8"
	"github.com/playgate/playgate/bench/internal/load"
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
	// public catalogue (all its pages).
	type item struct {
		ObjectKey *string `json:"object_key"`
		SizeBytes *int64  `json:"size_bytes"`
		HLSPrefix *string `json:"hls_prefix"`
	}
	var items []item
	for cursor := ""; ; {
		b, err := get(*api + "/v1/tracks?limit=200&cursor=" + cursor)
		if err != nil {
			return err
		}
		var page struct {
			Items      []item  `json:"items"`
			NextCursor *string `json:"next_cursor"`
		}
		if err := json.Unmarshal(b, &page); err != nil {
			return err
		}
		items = append(items, page.Items...)
		if page.NextCursor == nil {
			break
		}
		cursor = *page.NextCursor
	}
	type original struct {
		url  string
		size int64
	}
	var originals []original
	var segs []string
	for _, t := range items {
		if t.ObjectKey != nil && *t.SizeBytes > 0 {
			originals = append(originals, original{sign("/"+*t.ObjectKey, ""), *t.SizeBytes})
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
				segs = append(segs, sign(dir+path.Dir(v.URI)+"/"+s.URI, dir))
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
	for i := range rngs {
		rngs[i] = rand.New(rand.NewPCG(uint64(i), 7))
	}
	do := func(w int) (int, error) {
		rng := rngs[w]
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		if secret != "" {
			req.Header.Set("X-Origin-Secret", secret)
		}
		if rng.Float64() < *segments {
			req.SetRequestURI(segs[rng.IntN(len(segs))])
		} else {
			o := originals[rng.IntN(len(originals))]
			first := int64(0)
			if o.size > 1<<20 {
				first = rng.Int64N(o.size/(1<<20)) << 20
			}
			req.SetRequestURI(o.url)
			req.Header.Set("Range", "bytes="+strconv.FormatInt(first, 10)+"-"+strconv.FormatInt(first+1<<20-1, 10))
		}
		if err := client.Do(req, resp); err != nil {
			return 0, err
		}
		return resp.StatusCode(), nil
	}
	res := load.Run(ctx, c.config(), do, progress(stderr, "origin"))
	fmt.Fprintln(stderr)
	r := toReport("origin", res)
	printTable(stdout, []report{r})
	if err := htmlReport(c.htmlOut, "bench origin", map[string]*load.Result{"origin": res}, []report{r}); err != nil {
		return err
	}
	return writeJSON(c.jsonOut, []report{r})
}
