package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/playgate/playgate/api/hls/m3u8"
	"github.com/playgate/playgate/bench/internal/hist"
	"github.com/playgate/playgate/bench/internal/load"
	"github.com/playgate/playgate/bench/internal/popularity"
)

// playCmd runs whole player sessions through signer → edge → origin: the
// signer's /hls redirect, the master and a media playlist, then segments,
// as fast as possible (a session's latency is the whole play). It reports
// plays/s, time to the first segment, the edge's hit ratio, and origin
// requests per 100 plays (from the origin's /metrics).
func playCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c common
	fs := flag.NewFlagSet("bench play", flag.ContinueOnError)
	c.register(fs)
	api := fs.String("api", "http://127.0.0.1:8080", "the catalog API, to find tracks with HLS")
	signer := fs.String("signer", "http://127.0.0.1:8081", "the signer")
	originMetrics := fs.String("origin-metrics", "http://127.0.0.1:8082/metrics", "the origin's /metrics, to count its requests")
	segments := fs.Int("segments", 0, "segments per play (0: all)")
	pace := fs.Bool("pace", false, "fetch segments at playback pace, keeping -buffer ahead of the playhead, as a player does (default: as fast as possible)")
	buffer := fs.Duration("buffer", 30*time.Second, "with -pace, how far ahead of the playhead the player fetches (hls.js's maxBufferLength)")
	zipfS := fs.Float64("zipf-s", 1.1, "zipf exponent of track popularity")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ids, err := readyTracks(ctx, *api)
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		return errors.New("no public track has an HLS package yet")
	}
	client := &fasthttp.Client{MaxConnsPerHost: c.connections, ReadTimeout: 30 * time.Second, DisablePathNormalizing: true}
	var hits, misses atomic.Int64
	var mu sync.Mutex
	ttfb := hist.New()
	zipfs := make([]*popularity.Zipf, c.connections)
	for i := range zipfs {
		if zipfs[i], err = popularity.NewZipf(int64(i+1), *zipfS, uint64(len(ids))); err != nil {
			return err
		}
	}
	fetch := func(u string) (int, []byte, error) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI(u)
		if err := client.Do(req, resp); err != nil {
			return 0, nil, err
		}
		switch string(resp.Header.Peek("X-Cache")) {
		case "HIT":
			hits.Add(1)
		case "MISS", "EXPIRED":
			misses.Add(1)
		}
		if resp.StatusCode() == fasthttp.StatusFound {
			return resp.StatusCode(), append([]byte(nil), resp.Header.Peek(fasthttp.HeaderLocation)...), nil
		}
		return resp.StatusCode(), append([]byte(nil), resp.Body()...), nil
	}
	play := func(ctx context.Context, w int) (int, error) {
		start := time.Now()
		status, loc, err := fetch(*signer + "/v1/tracks/" + ids[zipfs[w].Rank()] + "/hls")
		if err != nil || status != fasthttp.StatusFound {
			return status, err
		}
		masterURL, err := url.Parse(string(loc))
		if err != nil {
			return 0, err
		}
		status, body, err := fetch(masterURL.String())
		if err != nil || status != 200 {
			return status, err
		}
		master, err := m3u8.ParseMaster(body)
		if err != nil {
			return 0, err
		}
		mediaURL := masterURL.ResolveReference(&url.URL{Path: master.Variants[0].URI})
		status, body, err = fetch(mediaURL.String())
		if err != nil || status != 200 {
			return status, err
		}
		media, err := m3u8.ParseMedia(body)
		if err != nil {
			return 0, err
		}
		if media.MapURI != "" {
			status, _, err = fetch(mediaURL.ResolveReference(&url.URL{Path: media.MapURI}).String())
			if err != nil || status != 200 {
				return status, err
			}
		}
		segs := media.Segments
		if *segments > 0 {
			segs = segs[:min(len(segs), *segments)]
		}
		var playing time.Time // when the first media segment arrived
		var playhead time.Duration
		for i, s := range segs {
			if *pace && i > 0 {
				// Segment i is wanted once the playhead is within the
				// buffer of where it starts.
				wait := time.Until(playing.Add(playhead - *buffer))
				if wait > 0 {
					select {
					case <-time.After(wait):
					case <-ctx.Done():
						return 0, ctx.Err()
					}
				}
			}
			status, _, err = fetch(mediaURL.ResolveReference(&url.URL{Path: s.URI}).String())
			if err != nil || status != 200 {
				return status, err
			}
			if i == 0 { // playback can start
				playing = time.Now()
				mu.Lock()
				ttfb.Record(playing.Sub(start))
				mu.Unlock()
			}
			playhead += time.Duration(s.Duration * float64(time.Second))
		}
		return 200, nil
	}

	before, err := originRequests(ctx, *originMetrics)
	if err != nil {
		return err
	}
	res := load.Run(ctx, c.config(), play, progress(stderr, "play"))
	fmt.Fprintln(stderr)
	after, err := originRequests(ctx, *originMetrics)
	if err != nil {
		return err
	}
	r := toReport("play", res)
	printTable(stdout, []report{r})
	if err := htmlReport(c.htmlOut, "bench play", map[string]*load.Result{"play": res}, []report{r}); err != nil {
		return err
	}
	h, m := float64(hits.Load()), float64(misses.Load())
	plays := float64(res.Requests)
	hitRatio := 0.0
	if h+m > 0 {
		hitRatio = h / (h + m)
	}
	// Origin requests include the warm-up's: the figure is an upper bound.
	perHundred := (after - before) / max(plays, 1) * 100
	fmt.Fprintf(stdout, "\nplays/s %.1f  first segment after p50 %s p99 %s  edge hit ratio %.3f  origin requests per 100 plays %.1f\n",
		res.RPS(), ttfb.Quantile(0.5), ttfb.Quantile(0.99), hitRatio, perHundred)
	return writeJSON(c.jsonOut, map[string]any{"report": r, "plays_per_s": res.RPS(), "ttfb_p50": ttfb.Quantile(0.5).String(),
		"ttfb_p99": ttfb.Quantile(0.99).String(), "edge_hit_ratio": hitRatio, "origin_requests_per_100_plays": perHundred})
}

// readyTracks lists public tracks with an HLS package.
func readyTracks(ctx context.Context, api string) ([]string, error) {
	tracks, err := publicTracks(ctx, api)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, t := range tracks {
		if t.HLSStatus == "ready" {
			ids = append(ids, t.ID)
		}
	}
	return ids, nil
}

// originRequests sums playgate_origin_requests_total from /metrics.
func originRequests(ctx context.Context, metricsURL string) (float64, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", metricsURL, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("cannot read the origin's metrics: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	var sum float64
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "playgate_origin_requests_total{") {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err == nil {
			sum += v
		}
	}
	return sum, nil
}
