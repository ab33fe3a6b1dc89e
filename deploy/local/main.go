// Command local is the stack launcher behind `make run`: it brings up a
// PostgreSQL cluster under .data/pg, applies migrations, starts every
// playgate service with prefixed logs, uploads a generated demo track and
// prints commands to try. Ctrl-C stops everything, the database last.
//
// Everything it creates lives under .data/, so `rm -rf .data` resets it.
// Variables already set in the environment win over its defaults, so the
// same launcher runs the stack against S3 or with other settings.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/playgate/playgate/api/auth"
	"github.com/playgate/playgate/deploy/edge"
	"github.com/playgate/playgate/internal/pgcluster"
)

const demoUser = "demo"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "local:", err)
		os.Exit(1)
	}
}

// service is one binary the launcher runs.
type service struct {
	name string
	args []string
	addr string // host:port its /readyz answers on
}

func run(ctx context.Context) error {
	data, err := filepath.Abs(".data")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(data, "bin"), 0o755); err != nil {
		return err
	}
	env, err := loadEnv(data)
	if err != nil {
		return err
	}

	say("building binaries")
	for _, b := range []string{"api", "signer", "origin"} {
		if err := runCmd(ctx, "go", "build", "-o", filepath.Join(data, "bin", b), "./"+b); err != nil {
			return err
		}
	}

	cluster, err := startDatabase(ctx, data, env)
	if err != nil {
		return err
	}
	defer func() {
		say("stopping PostgreSQL")
		sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := cluster.Stop(sctx); err != nil {
			say("cannot stop PostgreSQL: %v", err)
		}
	}()

	say("applying migrations")
	if err := runEnv(ctx, env, filepath.Join(data, "bin", "api"), "migrate"); err != nil {
		return err
	}

	if env["EDGE"] == "1" {
		// The self-hosted edge in front of the origin: the signer signs
		// bunny URLs for it, the origin only answers the edge.
		dir := filepath.Join(data, "edge")
		e, err := edge.Start(dir, edge.Config{Listen: hostPort(env["EDGE_ADDR"]), Origin: "http://" + hostPort(env["ORIGIN_ADDR"]),
			Keys: []string{env["CDN_SECURITY_KEY"]}, Secret: env["ORIGIN_SECRET"], PurgeListen: "127.0.0.1:8084"})
		if err != nil {
			return err
		}
		defer func() { say("stopping the edge"); e.Stop() }()
		say("edge (nginx + njs) listening on %s", e.Addr)
		for k, v := range map[string]string{"CDN_ENABLED": "true", "CDN_PROVIDER": "bunny",
			"CDN_BASE_URL": "http://" + e.Addr, "ORIGIN_AUTH": "header", "EDGE_PURGE_URL": "http://127.0.0.1:8084"} {
			env[k] = v
		}
	}

	services := []service{
		{name: "api", args: []string{"serve"}, addr: hostPort(env["API_ADDR"])},
		{name: "origin", addr: hostPort(env["ORIGIN_ADDR"])},
		{name: "signer", args: []string{"serve"}, addr: hostPort(env["SIGNER_ADDR"])},
	}
	var wg sync.WaitGroup
	procs := map[string]*exec.Cmd{}
	exited := make(chan string, len(services))
	for _, s := range services {
		cmd := exec.Command(filepath.Join(data, "bin", s.name), s.args...)
		cmd.Env = envList(env)
		cmd.Stdout = prefixWriter(s.name, os.Stdout, &wg)
		cmd.Stderr = prefixWriter(s.name, os.Stderr, &wg)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("cannot start %s: %w", s.name, err)
		}
		procs[s.name] = cmd
		go func(name string) { _ = cmd.Wait(); exited <- name }(s.name)
	}
	defer func() {
		for name, cmd := range procs {
			say("stopping %s", name)
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		}
		deadline := time.After(20 * time.Second)
		for range procs {
			select {
			case <-exited:
			case <-deadline:
				for _, cmd := range procs {
					_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				}
			}
		}
	}()

	for _, s := range services {
		if err := waitReady(ctx, s, exited); err != nil {
			return err
		}
	}
	demo, err := ensureDemoTrack(ctx, data, env)
	if err != nil {
		return err
	}
	waitForHLS(ctx, env, &demo)
	printWelcome(env, demo)

	select {
	case <-ctx.Done():
		return nil
	case name := <-exited:
		delete(procs, name)
		return fmt.Errorf("%s exited; see its log above", name)
	}
}

// loadEnv merges, lowest first: built-in defaults, secrets generated once
// and kept in .data/secrets.env, and the caller's environment.
func loadEnv(data string) (map[string]string, error) {
	env := map[string]string{
		"API_ADDR":              "127.0.0.1:8080",
		"SIGNER_ADDR":           "127.0.0.1:8081",
		"ORIGIN_ADDR":           "127.0.0.1:8082",
		"SIGNER_PUBLIC_URL":     "http://127.0.0.1:8081",
		"ORIGIN_PUBLIC_URL":     "http://127.0.0.1:8082",
		"STORAGE_DIR":           filepath.Join(data, "objects"),
		"TRACK_STORAGE_BACKEND": "local",
		"PLAYGATE_PG_PORT":      "54329",
		"LOG_LEVEL":             "info",
		"EDGE_ADDR":             "127.0.0.1:8083",
		// The lossless tier is opt-in for operators (it multiplies what
		// a listener who picks it costs at the CDN); here it shows, on
		// the FLAC demo track, what the player page's choice does.
		"HLS_RENDITIONS": "64k,128k,256k,flac",
	}
	secretsFile := filepath.Join(data, "secrets.env")
	if _, err := os.Stat(secretsFile); errors.Is(err, os.ErrNotExist) {
		var b bytes.Buffer
		for _, k := range []string{"AUTH_JWT_SECRET", "CDN_SECURITY_KEY", "ORIGIN_TOKEN_KEY", "ORIGIN_SECRET"} {
			fmt.Fprintf(&b, "%s=%s\n", k, randomHex(32))
		}
		if err := os.WriteFile(secretsFile, b.Bytes(), 0o600); err != nil {
			return nil, err
		}
	}
	f, err := os.ReadFile(secretsFile)
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(f), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
			env[k] = v
		}
	}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	if env["DATABASE_URL"] == "" {
		env["DATABASE_URL"] = fmt.Sprintf("postgres://postgres@127.0.0.1:%s/playgate?sslmode=disable", env["PLAYGATE_PG_PORT"])
	}
	return env, nil
}

func startDatabase(ctx context.Context, data string, env map[string]string) (*pgcluster.Cluster, error) {
	var port int
	if _, err := fmt.Sscan(env["PLAYGATE_PG_PORT"], &port); err != nil {
		return nil, fmt.Errorf("PLAYGATE_PG_PORT: %w", err)
	}
	c, err := pgcluster.New(filepath.Join(data, "pg"), port)
	if err != nil {
		return nil, err
	}
	c.Durable = true
	if !c.Initialized() {
		say("creating a PostgreSQL cluster in %s", c.Dir)
		if err := c.Init(ctx); err != nil {
			return nil, err
		}
	}
	if !c.Running(ctx) {
		say("starting PostgreSQL on 127.0.0.1:%d", port)
		if err := c.Start(ctx); err != nil {
			return nil, err
		}
	}
	conn, err := pgx.Connect(ctx, c.AdminURL())
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'playgate')").Scan(&exists); err != nil {
		return nil, err
	}
	if !exists {
		if _, err := conn.Exec(ctx, "CREATE DATABASE playgate"); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func waitReady(ctx context.Context, s service, exited <-chan string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + s.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not become ready on %s", s.name, s.addr)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case name := <-exited:
			return fmt.Errorf("%s exited at start; see its log above", name)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

type demoTrack struct {
	ID    string
	Token string
	Audio string // the uploaded file, under .data
	// Lossless: the track's package has the FLAC tier.
	Lossless bool
}

// ensureDemoTrack uploads a generated track once and reuses it after.
func ensureDemoTrack(ctx context.Context, data string, env map[string]string) (demoTrack, error) {
	token, err := auth.Mint([]byte(env["AUTH_JWT_SECRET"]), auth.MintOptions{Subject: demoUser, TTL: 24 * time.Hour})
	if err != nil {
		return demoTrack{}, err
	}
	api := "http://" + hostPort(env["API_ADDR"])
	idFile := filepath.Join(data, "demo-track-id")
	// A .data from before the demo was FLAC keeps its MP3 demo.
	audio, contentType := filepath.Join(data, "demo.mp3"), "audio/mpeg"
	if _, err := os.Stat(audio); err != nil {
		audio, contentType = filepath.Join(data, "demo.flac"), "audio/flac"
	}
	if b, err := os.ReadFile(idFile); err == nil {
		id := strings.TrimSpace(string(b))
		if status, _, _ := call(ctx, "GET", api+"/v1/tracks/"+id, token, "", nil); status == http.StatusOK {
			return demoTrack{ID: id, Token: token, Audio: audio}, nil
		}
	}

	if _, err := os.Stat(audio); err != nil {
		say("generating a 30 s demo track with ffmpeg")
		// A short arpeggio, so seeking is audible; FLAC, so that its
		// package has the lossless tier.
		src := "sine=f=440:d=30,volume=0.3[a];sine=f=554.37:d=30,volume=0.2[b];sine=f=659.25:d=30,volume=0.2[c];[a][b][c]amix=inputs=3"
		if err := runCmd(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-filter_complex", src,
			"-c:a", "flac", "-sample_fmt", "s16", "-ar", "44100", audio); err != nil {
			return demoTrack{}, fmt.Errorf("%w (install ffmpeg: make deps)", err)
		}
	}
	body, _ := json.Marshal(map[string]any{"title": "Demo tone", "artist": "playgate", "visibility": "public"})
	status, resp, err := call(ctx, "POST", api+"/v1/tracks", token, "application/json", bytes.NewReader(body))
	if err != nil || status != http.StatusCreated {
		return demoTrack{}, fmt.Errorf("cannot create the demo track: %d %s %v", status, resp, err)
	}
	var tr struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(resp, &tr); err != nil {
		return demoTrack{}, err
	}
	f, err := os.Open(audio)
	if err != nil {
		return demoTrack{}, err
	}
	defer f.Close()
	say("uploading the demo track %s", tr.ID)
	status, resp, err = call(ctx, "PUT", api+"/v1/tracks/"+tr.ID+"/audio", token, contentType, f)
	if err != nil || status != http.StatusOK {
		return demoTrack{}, fmt.Errorf("cannot upload the demo track: %d %s %v", status, resp, err)
	}
	if err := os.WriteFile(idFile, []byte(tr.ID+"\n"), 0o644); err != nil {
		return demoTrack{}, err
	}
	return demoTrack{ID: tr.ID, Token: token, Audio: audio}, nil
}

// waitForHLS waits for the demo track's package, so the printed HLS
// commands work when they are printed, and notes whether it has the
// lossless tier.
func waitForHLS(ctx context.Context, env map[string]string, d *demoTrack) {
	api := "http://" + hostPort(env["API_ADDR"])
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		_, body, err := call(ctx, "GET", api+"/v1/tracks/"+d.ID, d.Token, "", nil)
		var tr struct {
			HLSStatus   string  `json:"hls_status"`
			HLSError    *string `json:"hls_error"`
			HLSLossless bool    `json:"hls_lossless"`
		}
		if err == nil && json.Unmarshal(body, &tr) == nil {
			switch tr.HLSStatus {
			case "ready":
				d.Lossless = tr.HLSLossless
				return
			case "failed":
				say("the demo track's HLS packaging failed: %v", tr.HLSError)
				return
			case "none":
				say("HLS_STREAMING is off: the demo track has no HLS package")
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
	say("the demo track's HLS package is not ready yet; see the api's log")
}

func printWelcome(env map[string]string, d demoTrack) {
	api := "http://" + hostPort(env["API_ADDR"])
	signer := "http://" + hostPort(env["SIGNER_ADDR"])
	audio := filepath.Base(d.Audio)
	lossless := ""
	if d.Lossless {
		lossless = fmt.Sprintf(`
  # its lossless tier (FLAC first), which listeners opt in to
  ffmpeg -hide_banner -i '%s/v1/tracks/%s/hls?quality=lossless' -map 0:a:0 -f null -
`, signer, d.ID)
	}
	fmt.Printf(`
playgate is running: api %s, signer %s, origin http://%s.

  Player page: %s/ (public tracks, played with hls.js through the signer)

Try:

  export TOKEN=%s

  # play the demo track: the signer answers 302 to a signed origin URL
  curl -sL -o %s %s/v1/tracks/%s/stream && ls -l %s
  curl -sL -r 1000-1999 %s/v1/tracks/%s/stream | wc -c      # a byte range
  curl -si %s/v1/tracks/%s/stream | grep -i '^location'      # the signed URL

  # play its HLS package (made by the packaging worker) with ffmpeg as the player
  curl -si %s/v1/tracks/%s/hls | grep -i '^location'
  ffmpeg -hide_banner -i %s/v1/tracks/%s/hls -map 0:a:0 -map 0:a:1 -map 0:a:2 -f null -
%s
  # the demo track's metadata, and your tracks (as user %q)
  curl -s %s/v1/tracks/%s
  curl -s -H "Authorization: Bearer $TOKEN" '%s/v1/tracks?owner=me'

  # create a track and upload audio to it
  ID=$(curl -s -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{"title":"My song","artist":"Me","visibility":"public"}' %s/v1/tracks | sed 's/.*"id":"\([^"]*\)".*/\1/')
  curl -s -X PUT -H "Authorization: Bearer $TOKEN" --data-binary @.data/%s %s/v1/tracks/$ID/audio

  # a token for another user
  AUTH_JWT_SECRET=%s .data/bin/api token --sub alice

Press Ctrl-C to stop everything.
`, api, signer, hostPort(env["ORIGIN_ADDR"]), api, d.Token,
		audio, signer, d.ID, audio, signer, d.ID, signer, d.ID,
		signer, d.ID, signer, d.ID, lossless,
		demoUser, api, d.ID, api, api, audio, api, env["AUTH_JWT_SECRET"])
}

func call(ctx context.Context, method, url, token, contentType string, body io.Reader) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func runCmd(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}

func runEnv(ctx context.Context, env map[string]string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = envList(env)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", filepath.Base(name), strings.Join(args, " "), err)
	}
	return nil
}

func envList(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// prefixWriter prefixes each line a service writes with its name.
func prefixWriter(name string, dst io.Writer, wg *sync.WaitGroup) io.Writer {
	pr, pw := io.Pipe()
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			fmt.Fprintf(dst, "[%-6s] %s\n", name, sc.Text())
		}
	}()
	return pw
}

// hostPort turns a listen address such as ":8080" into one to dial.
func hostPort(addr string) string {
	if strings.HasPrefix(addr, ":") {
		return "127.0.0.1" + addr
	}
	return addr
}

func say(format string, args ...any) {
	fmt.Printf("[local ] "+format+"\n", args...)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
