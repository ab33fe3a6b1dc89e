// Package staticnginx runs nginx as a plain static file server: the
// ceiling the origin is measured against (SPEC §12), serving the same
// files with the same cache headers.
package staticnginx

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/playgate/playgate/deploy/edge"
)

// Start runs nginx (bin: edge.Nginx) in the foreground with a
// configuration of its own serving root, and returns its address, its
// master's pid and how to stop it. workers is its number of worker
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
	// reuseport gives each worker a listening socket of its own, and the
	// kernel spreads connections over them. Without it, wrk's connections,
	// opened all at once, went mostly to one worker (57 of 64, ss -tnp),
	// and nginx served ~7% fewer ~100 KB segments a second relative to
	// originbench's floor (two runs each way, 5 rounds; 1 MiB ranges were
	// ~7% faster without it, and stay far behind the origin either way).
	// The origin is measured against the stronger nginx on segments.
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
    listen %[2]s reuseport;
    root %[3]s;
    location / { add_header Cache-Control "public, max-age=31536000, immutable"; }
  }
}
`, dir, addr, root, workerProcesses)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return "", 0, nil, err
	}
	e, err := edge.Run(bin, confPath, dir, addr)
	if err != nil {
		return "", 0, nil, err
	}
	return addr, e.PID(), e.Stop, nil
}
