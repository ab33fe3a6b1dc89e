// Package staticnginx runs nginx as a plain static file server: the
// ceiling the origin is measured against (SPEC §12), serving the same
// files with the same cache headers.
package staticnginx

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Find returns the nginx binary, which Debian installs outside a normal
// user's PATH.
func Find() (string, error) {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err != nil {
		return "", errors.New("nginx is needed: apt-get install -y nginx")
	}
	return "/usr/sbin/nginx", nil
}

// Start runs nginx in the foreground with a configuration of its own
// serving root, and returns its address. workers is its number of worker
// processes (0: one per core).
func Start(bin, dir, root string, workers int) (string, int, func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", 0, nil, err
	}
	addr := l.Addr().String()
	l.Close()
	workerProcesses := "auto"
	if workers > 0 {
		workerProcesses = strconv.Itoa(workers)
	}
	conf := fmt.Sprintf(`worker_processes %[4]s;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_requests 1000000;
  open_file_cache max=1000 inactive=60s;
  types { audio/mpeg mp3; video/iso.segment m4s; }
  client_body_temp_path %[1]s/tmp;
  proxy_temp_path %[1]s/tmp;
  fastcgi_temp_path %[1]s/tmp;
  uwsgi_temp_path %[1]s/tmp;
  scgi_temp_path %[1]s/tmp;
  server {
    listen %[2]s;
    root %[3]s;
    location / { add_header Cache-Control "public, max-age=31536000, immutable"; }
  }
}
`, dir, addr, root, workerProcesses)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return "", 0, nil, err
	}
	cmd := exec.Command(bin, "-c", confPath, "-p", dir, "-g", "daemon off;")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return "", 0, nil, fmt.Errorf("cannot start nginx: %w", err)
	}
	stop := func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGQUIT)
		_ = cmd.Wait()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr, cmd.Process.Pid, stop, nil
		}
		if ctx.Err() != nil {
			stop()
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			return "", 0, nil, fmt.Errorf("nginx did not start: %s", log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
