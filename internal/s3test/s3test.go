// Package s3test runs a real S3 server for tests: versitygw with its
// posix backend in a temporary directory, on a free loopback port.
package s3test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/playgate/playgate/origin/storage"
)

// InstallHint tells a user how to get the server.
const InstallHint = "install versitygw: `make deps`, or go install github.com/versity/versitygw/cmd/versitygw@v1.8.0"

// Server is a running versitygw.
type Server struct {
	Endpoint  string
	AccessKey string
	SecretKey string
	Region    string
}

// Start starts versitygw for the test and stops it when the test ends.
// A machine without versitygw fails the test with how to install it.
func Start(t testing.TB) *Server {
	t.Helper()
	srv, stop, err := start()
	if err != nil {
		t.Fatalf("s3test: %v", err)
	}
	t.Cleanup(stop)
	return srv
}

func findBinary() (string, error) {
	if p := os.Getenv("VERSITYGW"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	var candidates []string
	if wd, err := os.Getwd(); err == nil {
		// The Makefile installs pinned tools into .tools/bin at the module root.
		for dir := wd; ; dir = filepath.Dir(dir) {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				candidates = append(candidates, filepath.Join(dir, ".tools", "bin", "versitygw"))
				break
			}
			if filepath.Dir(dir) == dir {
				break
			}
		}
	}
	if home, err := os.UserHomeDir(); err == nil {
		candidates = append(candidates, filepath.Join(home, "go", "bin", "versitygw"))
	}
	for _, c := range candidates {
		if _, err := os.Stat(c); err == nil {
			return c, nil
		}
	}
	return "", errors.New("versitygw not found; " + InstallHint)
}

func start() (*Server, func(), error) {
	bin, err := findBinary()
	if err != nil {
		return nil, nil, err
	}
	dir, err := os.MkdirTemp("", "playgate-s3-")
	if err != nil {
		return nil, nil, err
	}
	for _, d := range []string{"data", "meta"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			os.RemoveAll(dir)
			return nil, nil, err
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	addr := l.Addr().String()
	l.Close()

	srv := &Server{
		Endpoint:  "http://" + addr,
		AccessKey: "playgate-test",
		SecretKey: randomHex(16),
		Region:    "us-east-1",
	}
	var logBuf bytes.Buffer
	// Metadata goes to a sidecar directory so that the test does not need
	// a filesystem with extended attributes.
	// --keep-alive: AWS, R2 and MinIO keep connections open between
	// requests; without it versitygw closes each one, and a test could
	// not see whether a client reuses them.
	cmd := exec.Command(bin, "--access", srv.AccessKey, "--secret", srv.SecretKey,
		"--region", srv.Region, "--port", addr, "--keep-alive",
		"posix", "--sidecar", filepath.Join(dir, "meta"), filepath.Join(dir, "data"))
	cmd.Stdout, cmd.Stderr = &logBuf, &logBuf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("cannot start versitygw: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop := func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		os.RemoveAll(dir)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return srv, stop, nil
		}
		select {
		case <-exited:
			stop()
			return nil, nil, fmt.Errorf("versitygw exited at start: %s", logBuf.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return nil, nil, fmt.Errorf("versitygw did not listen on %s: %s", addr, logBuf.String())
		}
	}
}

// Config returns a storage configuration for bucket on this server.
func (s *Server) Config(bucket string) storage.S3Config {
	return storage.S3Config{
		Endpoint:        s.Endpoint,
		Bucket:          bucket,
		Region:          s.Region,
		AccessKeyID:     s.AccessKey,
		SecretAccessKey: s.SecretKey,
		ForcePathStyle:  true,
		PartSize:        5 << 20,
	}
}

// NewBucket creates a bucket with a random name and returns a backend on
// it.
func (s *Server) NewBucket(t testing.TB) *storage.S3 {
	t.Helper()
	cfg := s.Config("t-" + randomHex(6))
	ctx := context.Background()
	client, err := storage.NewS3Client(ctx, cfg)
	if err != nil {
		t.Fatalf("s3test: %v", err)
	}
	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &cfg.Bucket}); err != nil {
		t.Fatalf("s3test: cannot create bucket %s: %v", cfg.Bucket, err)
	}
	b, err := storage.NewS3(client, cfg.Bucket, cfg.PartSize)
	if err != nil {
		t.Fatalf("s3test: %v", err)
	}
	return b
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
