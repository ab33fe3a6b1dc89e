package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Invalid configuration stops the origin at start with one line per
// problem, and token mode refuses to start without its key.
func TestConfigProblems(t *testing.T) {
	for _, c := range []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"token mode without a key", map[string]string{}, []string{"ORIGIN_AUTH=token needs ORIGIN_TOKEN_KEY"}},
		{"header mode without a secret", map[string]string{"ORIGIN_AUTH": "header"}, []string{"ORIGIN_SECRET"}},
		{"unknown auth and backends", map[string]string{"ORIGIN_AUTH": "maybe", "TRACK_STORAGE_BACKEND": "tape", "ORIGIN_FALLBACK_BACKEND": "s3"},
			[]string{"TRACK_STORAGE_BACKEND must be local or s3", "the s3 backend needs S3_BUCKET"}},
		{"fallback equal to primary", map[string]string{"ORIGIN_TOKEN_KEY": "0123456789abcdef0", "ORIGIN_FALLBACK_BACKEND": "local"},
			[]string{"ORIGIN_FALLBACK_BACKEND must differ"}},
		{"negative open files", map[string]string{"ORIGIN_TOKEN_KEY": "0123456789abcdef0", "ORIGIN_OPEN_FILES": "-1"},
			[]string{"ORIGIN_OPEN_FILES must be 0"}},
		{"negative open files validity", map[string]string{"ORIGIN_TOKEN_KEY": "0123456789abcdef0", "ORIGIN_OPEN_FILES_VALID": "-1s"},
			[]string{"ORIGIN_OPEN_FILES_VALID must be 0"}},
		{"negative idle S3 connections", map[string]string{"ORIGIN_TOKEN_KEY": "0123456789abcdef0", "S3_BUCKET": "b", "S3_MAX_IDLE_CONNS": "-1"},
			[]string{"S3_MAX_IDLE_CONNS must not be negative"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			t.Setenv("STORAGE_DIR", t.TempDir())
			err := run(context.Background(), &bytes.Buffer{})
			require.Error(t, err)
			for _, w := range c.want {
				assert.Contains(t, err.Error(), w)
			}
			assert.True(t, strings.HasPrefix(err.Error(), "invalid configuration") || strings.Contains(err.Error(), "ORIGIN_"), err.Error())
		})
	}
}

// A CDN in front defaults the origin to the shared-secret header.
func TestAuthDefaults(t *testing.T) {
	assert.Equal(t, "token", string((&Config{}).auth()))
	assert.Equal(t, "header", string((&Config{CDNEnabled: true}).auth()))
	assert.Equal(t, "none", string((&Config{Auth: "none", CDNEnabled: true}).auth()))
}

// A configuration that may hold more descriptors open than the process
// may have is warned about at start, as nginx does.
func TestWarnsOfTooFewDescriptors(t *testing.T) {
	var files syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &files))
	if files.Cur > 1<<40 {
		t.Skip("no open-file limit to fall short of")
	}
	t.Setenv("ORIGIN_AUTH", "none")
	t.Setenv("ORIGIN_ADDR", "127.0.0.1:0")
	t.Setenv("STORAGE_DIR", t.TempDir())
	t.Setenv("ORIGIN_MAX_CONNS", strconv.FormatUint(files.Cur, 10))

	// A file takes the log from the server's goroutines safely.
	logFile, err := os.Create(filepath.Join(t.TempDir(), "log"))
	require.NoError(t, err)
	defer logFile.Close()
	logged := func() string { b, _ := os.ReadFile(logFile.Name()); return string(b) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, logFile) }()
	require.Eventually(t, func() bool { return strings.Contains(logged(), "origin listening") }, 10*time.Second, 10*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	assert.Contains(t, logged(), "the open-file limit is below what ORIGIN_MAX_CONNS and ORIGIN_OPEN_FILES may hold open")
	assert.Contains(t, logged(), `"needed":`+strconv.FormatUint(files.Cur+1000+128, 10))
}
