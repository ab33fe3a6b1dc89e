// Package pgcluster runs a private PostgreSQL cluster from the server
// binaries installed on the machine (initdb, pg_ctl). The test suites and
// the `make run` launcher use it so that nothing depends on a system-wide
// server being configured.
//
// PostgreSQL refuses to run as root; when the process is root the cluster
// directory is owned by, and the binaries run as, the `postgres` user.
package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"
)

// InstallHint is what a caller should tell a user whose machine lacks the
// server binaries.
const InstallHint = "install the PostgreSQL server: apt-get install -y postgresql (or run `make deps`)"

// Cluster is one data directory and the server started on it.
type Cluster struct {
	Dir  string // data directory
	Port int
	// Durable keeps fsync on. Test clusters turn it off: a crash loses
	// nothing of value and the suite runs several times faster.
	Durable bool

	bin  string // directory holding initdb, pg_ctl
	cred *syscall.Credential
}

// New describes a cluster in dir listening on 127.0.0.1:port. It fails
// when the server binaries cannot be found.
func New(dir string, port int) (*Cluster, error) {
	bin, err := findBinDir()
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("pgcluster: cannot resolve %s: %w", dir, err)
	}
	c := &Cluster{Dir: abs, Port: port, bin: bin}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("pgcluster: running as root needs the postgres user (%s): %w", InstallHint, err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	return c, nil
}

// findBinDir locates the directory of initdb: PATH first, then Debian's
// versioned directories, newest first.
func findBinDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if _, err := exec.LookPath("pg_ctl"); err == nil {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("pgcluster: initdb and pg_ctl not found; " + InstallHint)
}

func versionOf(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// Initialized reports whether the data directory already holds a cluster.
func (c *Cluster) Initialized() bool {
	_, err := os.Stat(filepath.Join(c.Dir, "PG_VERSION"))
	return err == nil
}

// Init creates the data directory and runs initdb with trust
// authentication for local connections only (the server listens on
// loopback alone).
func (c *Cluster) Init(ctx context.Context) error {
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return fmt.Errorf("pgcluster: cannot create %s: %w", c.Dir, err)
	}
	if err := c.chown(c.Dir); err != nil {
		return err
	}
	return c.run(ctx, "initdb", "-D", c.Dir, "-U", "postgres", "--auth=trust",
		"--encoding=UTF8", "--locale=C", "--no-sync")
}

// Start starts the server and waits until it accepts connections.
func (c *Cluster) Start(ctx context.Context) error {
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -c port=%d -c unix_socket_directories='%s' -c max_connections=200",
		c.Port, c.Dir)
	if !c.Durable {
		opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
	}
	logFile := filepath.Join(c.Dir, "server.log")
	if err := c.run(ctx, "pg_ctl", "-D", c.Dir, "-l", logFile, "-o", opts, "-w", "-t", "60", "start"); err != nil {
		log, _ := os.ReadFile(logFile)
		return fmt.Errorf("%w\nserver log:\n%s", err, tail(log, 2000))
	}
	return nil
}

// Stop shuts the server down (fast mode: open sessions are cancelled).
func (c *Cluster) Stop(ctx context.Context) error {
	return c.run(ctx, "pg_ctl", "-D", c.Dir, "-m", "fast", "-w", "-t", "60", "stop")
}

// Running reports whether a server is running on the data directory.
func (c *Cluster) Running(ctx context.Context) bool {
	return c.run(ctx, "pg_ctl", "-D", c.Dir, "status") == nil
}

// AdminURL is a connection string for the superuser's maintenance database.
func (c *Cluster) AdminURL() string { return c.URL("postgres") }

// URL is a connection string for database name on this cluster.
func (c *Cluster) URL(name string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.Port, name)
}

func (c *Cluster) run(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, name), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// The server must outlive this process's signals (Ctrl-C in `make
	// run` is handled by stopping it cleanly), so give it its own group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred, Setpgid: true}
	cmd.Dir = os.TempDir() // the postgres user may not be able to enter ours
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("pgcluster: %s %v: %w: %s", name, args, err, tail(out.Bytes(), 2000))
	}
	return nil
}

func (c *Cluster) chown(path string) error {
	if c.cred == nil {
		return nil
	}
	if err := os.Chown(path, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
		return fmt.Errorf("pgcluster: cannot hand %s to postgres: %w", path, err)
	}
	return nil
}

// FreePort asks the kernel for a loopback port that is free right now.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

const (
	tempPrefix = "playgate-pg-"
	ownerFile  = "owner.pid"
)

// StartTemp initialises and starts a throw-away cluster in a new
// temporary directory. The returned stop function stops the server and
// removes the directory.
//
// A process killed before it can call stop (a test binary that hits its
// timeout panics without cleanup) would leave its server running, so
// StartTemp first reaps temporary clusters whose owner has died.
func StartTemp(ctx context.Context) (*Cluster, func(), error) {
	reapOrphans(ctx)
	dir, err := os.MkdirTemp("", tempPrefix)
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		cleanup()
		return nil, nil, err
	}
	var lastErr error
	// A free port can be taken between FreePort and the server's bind;
	// try a few before giving up.
	for attempt := 0; attempt < 3; attempt++ {
		port, err := FreePort()
		if err != nil {
			cleanup()
			return nil, nil, err
		}
		c, err := New(filepath.Join(dir, "data"), port)
		if err != nil {
			cleanup()
			return nil, nil, err
		}
		if err := c.chown(dir); err != nil {
			cleanup()
			return nil, nil, err
		}
		if !c.Initialized() {
			if err := c.Init(ctx); err != nil {
				cleanup()
				return nil, nil, err
			}
		}
		if lastErr = c.Start(ctx); lastErr == nil {
			return c, func() {
				stopCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				_ = c.Stop(stopCtx)
				cleanup()
			}, nil
		}
	}
	cleanup()
	return nil, nil, lastErr
}

// reapOrphans stops and removes temporary clusters whose owning process
// no longer exists.
func reapOrphans(ctx context.Context) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), tempPrefix+"*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(string(b))
		if err != nil || pid <= 0 || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue // alive, or not ours to judge
		}
		if c, err := New(filepath.Join(dir, "data"), 0); err == nil && c.Initialized() {
			_ = c.run(ctx, "pg_ctl", "-D", c.Dir, "-m", "immediate", "-w", "stop")
		}
		os.RemoveAll(dir)
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
