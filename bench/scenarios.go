package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/valyala/fasthttp"

	"github.com/playgate/playgate/api/auth"
	"github.com/playgate/playgate/bench/internal/load"
	"github.com/playgate/playgate/bench/internal/loadcmp"
	"github.com/playgate/playgate/bench/internal/popularity"
)

// getter sends GETs to a fixed set of URIs and returns the status. With
// followRange set, a 302 is followed as a player would, with that Range
// (the first bytes of the track), and the status is the final answer's.
func getter(base string, connections int, pick func(worker int) string, followRange string) load.Do {
	client := &fasthttp.Client{MaxConnsPerHost: connections, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
		DisablePathNormalizing: true, MaxResponseBodySize: 64 << 20}
	return func(_ context.Context, worker int) (int, error) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI(base + pick(worker))
		if err := client.Do(req, resp); err != nil {
			return 0, err
		}
		if followRange == "" || resp.StatusCode() != fasthttp.StatusFound {
			return resp.StatusCode(), nil
		}
		req.Reset()
		req.SetRequestURIBytes(resp.Header.Peek(fasthttp.HeaderLocation))
		req.Header.Set(fasthttp.HeaderRange, followRange)
		resp.Reset()
		if err := client.Do(req, resp); err != nil {
			return 0, err
		}
		return resp.StatusCode(), nil
	}
}

func measureLimit(ctx context.Context, c common, stderr io.Writer) (report, *load.Result, error) {
	addr, stop, err := loadcmp.Serve(&fasthttp.Server{Handler: loadcmp.Bare302})
	if err != nil {
		return report{}, nil, err
	}
	defer stop()
	base := "http://" + addr
	res := load.Run(ctx, c.config(), getter(base, c.connections, func(int) string {
		return "/v1/tracks/0190a0b4-0000-7000-8000-000000000001/stream"
	}, ""), progress(stderr, "bare302"))
	fmt.Fprintln(stderr)
	return toReport("bare302", res), res, nil
}

// limitCmd measures the ceilings every other figure is read against
// (SPEC §12), with the same engine and settings: a bare fasthttp server
// answering a constant 302 (the signer's), and nginx serving files laid
// out as the origin stores them, with the origin scenario's request mix
// (the origin's).
func limitCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c common
	fs := flag.NewFlagSet("bench limit", flag.ContinueOnError)
	c.register(fs)
	withNginx := fs.Bool("nginx", true, "also measure nginx serving origin-like files")
	segments := fs.Float64("segments", 0.5, "fraction of nginx requests for HLS segments (the rest are 1 MiB ranges)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	r, res, err := measureLimit(ctx, c, stderr)
	if err != nil {
		return err
	}
	reports, runs := []report{r}, map[string]*load.Result{"bare302": res}
	if *withNginx {
		r, res, err := measureNginx(ctx, c, *segments, stderr)
		if err != nil {
			return err
		}
		reports, runs["nginx"] = append(reports, r), res
	}
	printTable(stdout, reports)
	if err := htmlReport(c.htmlOut, "bench limit", runs, reports); err != nil {
		return err
	}
	return writeJSON(c.jsonOut, reports)
}

// signerCmd seeds tracks through the api (or reuses a seed), loads the
// signer with zipf popularity and a request mix, then measures the bare
// 302 ceiling with the same settings and reports the ratio (SPEC §12).
func signerCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c common
	fs := flag.NewFlagSet("bench signer", flag.ContinueOnError)
	c.register(fs)
	api := fs.String("api", "http://127.0.0.1:8080", "the catalog API, to seed tracks")
	signer := fs.String("signer", "http://127.0.0.1:8081", "the signer")
	tracks := fs.Int("tracks", 1000, "public tracks to seed")
	private := fs.Int("private", 50, "private tracks with a share link to seed")
	reuse := fs.String("reuse", "", "a seed file written by an earlier run: skip seeding")
	seedOut := fs.String("seed-out", "bench-seed.json", "where to write the seed for -reuse")
	zipfS := fs.Float64("zipf-s", 1.1, "zipf exponent of track popularity (> 1)")
	shareFrac := fs.Float64("share", 0.1, "fraction of requests for shared private tracks")
	unknownFrac := fs.Float64("unknown", 0.05, "fraction of requests for unknown ids (404s)")
	follow := fs.String("follow", "", `follow each 302 with this Range, as a player does ("bytes=0-65535"); the figure then includes the CDN or origin`)
	if err := fs.Parse(args); err != nil {
		return err
	}
	var s seed
	if *reuse != "" {
		b, err := readFile(*reuse)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("-reuse %s: %w", *reuse, err)
		}
	} else {
		var err error
		if s, err = seedTracks(ctx, *api, *tracks, *private, stderr); err != nil {
			return err
		}
		if err := writeJSON(*seedOut, s); err != nil {
			return err
		}
	}
	if len(s.Public) == 0 {
		return errors.New("no public tracks to play")
	}

	pickers := make([]func() string, c.connections)
	for i := range pickers {
		z, err := popularity.NewZipf(int64(i+1), *zipfS, uint64(len(s.Public)))
		if err != nil {
			return err
		}
		rng := rand.New(rand.NewPCG(uint64(i), 99))
		pickers[i] = func() string {
			x := rng.Float64()
			switch {
			case x < *unknownFrac:
				return "/v1/tracks/" + uuid.New().String() + "/stream"
			case x < *unknownFrac+*shareFrac && len(s.Shared) > 0:
				sh := s.Shared[rng.IntN(len(s.Shared))]
				return "/v1/tracks/" + sh.ID + "/stream?share=" + sh.Token
			}
			return "/v1/tracks/" + s.Public[z.Rank()] + "/stream"
		}
	}
	res := load.Run(ctx, c.config(), getter(*signer, c.connections, func(w int) string { return pickers[w]() }, *follow),
		progress(stderr, "signer"))
	fmt.Fprintln(stderr)
	signerReport := toReport("signer", res)
	limit, limitRes, err := measureLimit(ctx, c, stderr)
	if err != nil {
		return err
	}
	reports := []report{limit, signerReport}
	printTable(stdout, reports)
	if err := htmlReport(c.htmlOut, "bench signer", map[string]*load.Result{"bare302": limitRes, "signer": res}, reports); err != nil {
		return err
	}
	if *follow != "" {
		// The ceiling answers the 302 only: no ratio against it.
		fmt.Fprintf(stdout, "\nsigner followed to the CDN or origin (-follow): no ratio to bare302\n")
	} else {
		fmt.Fprintf(stdout, "\nsigner / bare302 = %.2f  (SPEC §12 target: >= 0.80)\n", signerReport.RPS/limit.RPS)
	}
	out := map[string]any{"reports": reports}
	if *follow == "" {
		out["ratio_to_bare302"] = signerReport.RPS / limit.RPS
	}
	return writeJSON(c.jsonOut, out)
}

type seed struct {
	Public []string `json:"public"`
	Shared []struct {
		ID    string `json:"id"`
		Token string `json:"token"`
	} `json:"shared"`
}

// seedTracks creates tracks with a little audio through the API, minting a
// token with AUTH_JWT_SECRET.
func seedTracks(ctx context.Context, api string, public, private int, stderr io.Writer) (seed, error) {
	secret := getenv("AUTH_JWT_SECRET")
	if secret == "" {
		return seed{}, errors.New("seeding needs AUTH_JWT_SECRET (the api's), or -reuse")
	}
	tok, err := auth.Mint([]byte(secret), auth.MintOptions{Subject: "bench", TTL: time.Hour})
	if err != nil {
		return seed{}, err
	}
	// A tiny valid FLAC header is enough: the signer never reads audio.
	audio := append([]byte("fLaC"), make([]byte, 1024)...)
	call := func(method, url, ct string, body []byte) ([]byte, error) {
		req, _ := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", ct)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode/100 != 2 {
			return nil, fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, b)
		}
		return b, nil
	}
	var s seed
	for i := 0; i < public+private; i++ {
		vis := "public"
		if i >= public {
			vis = "private"
		}
		b, err := call("POST", api+"/v1/tracks", "application/json",
			[]byte(fmt.Sprintf(`{"title":"Bench %d","artist":"bench","visibility":%q}`, i, vis)))
		if err != nil {
			return seed{}, err
		}
		var tr struct{ ID string }
		if err := json.Unmarshal(b, &tr); err != nil {
			return seed{}, err
		}
		// Distinct bytes per track: content-addressed keys differ.
		body := append(append([]byte(nil), audio...), []byte(tr.ID)...)
		if _, err := call("PUT", api+"/v1/tracks/"+tr.ID+"/audio", "audio/flac", body); err != nil {
			return seed{}, err
		}
		if vis == "public" {
			s.Public = append(s.Public, tr.ID)
		} else {
			b, err := call("POST", api+"/v1/tracks/"+tr.ID+"/shares", "application/json", []byte(`{"expires_in":86400}`))
			if err != nil {
				return seed{}, err
			}
			var sh struct{ Token string }
			if err := json.Unmarshal(b, &sh); err != nil {
				return seed{}, err
			}
			s.Shared = append(s.Shared, struct {
				ID    string `json:"id"`
				Token string `json:"token"`
			}{tr.ID, sh.Token})
		}
		if i%100 == 0 {
			fmt.Fprintf(stderr, "\rseeding %d/%d", i, public+private)
		}
	}
	fmt.Fprintf(stderr, "\rseeded %d public and %d shared tracks\n", len(s.Public), len(s.Shared))
	return s, nil
}
