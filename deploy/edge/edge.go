// Package edge renders and runs playgate's self-hosted edge: Debian's
// nginx with the njs module acting as a Bunny pull zone with token
// authentication (SPEC §10). It verifies bunny (HMAC) tokens in query and
// path form, strips them, caches by object path, adds the origin secret
// header and marks X-Cache: HIT|MISS. Tests and `make run EDGE=1` use
// it; operators can render the same files for their own PoPs.
package edge

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"
)

//go:embed edge.js
var script []byte

//go:embed nginx.conf.tmpl
var confTemplate string

// InstallHint says how to get nginx with njs.
const InstallHint = "apt-get install -y nginx libnginx-mod-http-js (or make deps)"

// Config is one edge.
type Config struct {
	Listen       string   // host:port
	Origin       string   // http://host:port of the origin (an address, not a name)
	Keys         []string // current signing key, then the previous one
	SecretHeader string   // default X-Origin-Secret
	Secret       string
	CacheSize    string // default 1g
	Workers      int    // default 1
	// PurgeListen, if set, is a loopback address for the purge endpoint.
	PurgeListen string
}

// Edge is a running nginx.
type Edge struct {
	Addr string
	Dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

// Render writes the configuration and script into dir and returns the
// configuration's path.
func Render(dir string, cfg Config) (string, error) {
	if cfg.Listen == "" || cfg.Origin == "" || len(cfg.Keys) == 0 {
		return "", errors.New("edge: Listen, Origin and Keys are required")
	}
	for _, k := range cfg.Keys {
		if k == "" || strings.ContainsAny(k, " \"\\$;\n") {
			return "", errors.New("edge: keys must be non-empty and free of spaces, quotes, backslashes, $ and ;")
		}
	}
	if strings.ContainsAny(cfg.Secret, "\"\\$;\n") {
		return "", errors.New("edge: the origin secret must be free of quotes, backslashes, $ and ;")
	}
	origin, err := url.Parse(cfg.Origin)
	if err != nil || (origin.Scheme != "http" && origin.Scheme != "https") || origin.Host == "" || strings.Trim(origin.Path, "/") != "" {
		return "", fmt.Errorf("edge: the origin %q must be http(s)://host:port", cfg.Origin)
	}
	if cfg.SecretHeader == "" {
		cfg.SecretHeader = "X-Origin-Secret"
	}
	if cfg.CacheSize == "" {
		cfg.CacheSize = "1g"
	}
	if cfg.Workers == 0 {
		cfg.Workers = 1
	}
	module, err := findModule()
	if err != nil {
		return "", err
	}
	for _, d := range []string{"tmp", "cache"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return "", err
		}
	}
	scriptPath := filepath.Join(dir, "edge.js")
	if err := os.WriteFile(scriptPath, script, 0o644); err != nil {
		return "", err
	}
	data := struct {
		Config
		Dir, Script, JSModule, Keys, User string
		OriginScheme, OriginHost          string
	}{Config: cfg, Dir: dir, Script: scriptPath, JSModule: module, Keys: strings.Join(cfg.Keys, " "),
		OriginScheme: origin.Scheme, OriginHost: origin.Host}
	if os.Geteuid() == 0 {
		// Workers never run as root: they drop to nobody, who must be
		// able to write the cache.
		data.User = "nobody nogroup"
		if err := chownTree(dir, "nobody"); err != nil {
			return "", err
		}
	}
	var b bytes.Buffer
	if err := template.Must(template.New("nginx").Parse(confTemplate)).Execute(&b, data); err != nil {
		return "", err
	}
	conf := filepath.Join(dir, "nginx.conf")
	return conf, os.WriteFile(conf, b.Bytes(), 0o644)
}

func findModule() (string, error) {
	for _, p := range []string{"/usr/lib/nginx/modules/ngx_http_js_module.so", "/usr/share/nginx/modules/ngx_http_js_module.so"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("edge: the njs module is missing; " + InstallHint)
}

func chownTree(dir, name string) error {
	u, err := user.Lookup(name)
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	return filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(p, uid, gid)
	})
}

// Start renders the edge into dir and runs nginx in the foreground until
// Stop.
func Start(dir string, cfg Config) (*Edge, error) {
	bin, err := Nginx()
	if err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	conf, err := Render(dir, cfg)
	if err != nil {
		return nil, err
	}
	return Run(bin, conf, dir, cfg.Listen)
}

// Nginx returns the nginx binary, which Debian installs outside a normal
// user's PATH.
func Nginx() (string, error) {
	if bin, err := exec.LookPath("nginx"); err == nil {
		return bin, nil
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err != nil {
		return "", errors.New("nginx not found; " + InstallHint)
	}
	return "/usr/sbin/nginx", nil
}

// Run runs nginx in the foreground with the configuration conf and the
// prefix dir (where conf puts its pid file and error.log), until Stop. It
// returns once nginx accepts connections on listen. The bench's static
// nginx runs through it too.
func Run(bin, conf, dir, listen string) (*Edge, error) {
	var out bytes.Buffer
	cmd := exec.Command(bin, "-c", conf, "-p", dir, "-g", "daemon off;")
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("edge: cannot start nginx: %w", err)
	}
	e := &Edge{Addr: listen, Dir: dir, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(e.done) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		if c, err := net.Dial("tcp", listen); err == nil {
			c.Close()
			return e, nil
		}
		select {
		case <-e.done:
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			return nil, fmt.Errorf("edge: nginx exited: %s %s", out.String(), log)
		case <-ctx.Done():
			e.Stop()
			return nil, errors.New("edge: nginx did not listen on " + listen)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// PID is nginx's master process; its workers are its children.
func (e *Edge) PID() int { return e.cmd.Process.Pid }

// Stop shuts nginx down and waits for it.
func (e *Edge) Stop() {
	_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGQUIT)
	select {
	case <-e.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGKILL)
		<-e.done
	}
}
