package main

import (
	"bytes"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWarnAboutMemory(t *testing.T) {
	const mib = 1 << 20
	const none = math.MaxInt64
	const defaultCache = 320 * mib // SIGNER_CACHE_BYTES's default
	for _, c := range []struct {
		name                string
		cache, goLimit, cg  int64
		wantGOMEMLIMIT      bool // the warning that GOMEMLIMIT is missing
		wantCacheTooBigWarn bool
	}{
		{"no limits at all", defaultCache, none, 0, false, false},
		{"the shipped manifest", defaultCache, 600 * mib, 704 * mib, false, false},
		{"container limit, no GOMEMLIMIT", defaultCache, none, 704 * mib, true, false},
		{"the old manifest: 512Mi, no GOMEMLIMIT", defaultCache, none, 512 * mib, true, true},
		{"GOMEMLIMIT too low for the cache", defaultCache, 448 * mib, 0, false, true},
		{"a container limit lower than GOMEMLIMIT counts", defaultCache, 1024 * mib, 448 * mib, false, true},
		{"a cache doubled in the same container", 2 * defaultCache, 600 * mib, 704 * mib, false, true},
		{"a small cache in a small container", 16 * mib, 96 * mib, 128 * mib, false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			warnAboutMemory(slog.New(slog.NewJSONHandler(&out, nil)), c.cache, c.goLimit, c.cg)
			logged := out.String()
			assert.Equal(t, c.wantGOMEMLIMIT, strings.Contains(logged, "GOMEMLIMIT is not set"), logged)
			assert.Equal(t, c.wantCacheTooBigWarn, strings.Contains(logged, "lower SIGNER_CACHE_BYTES"), logged)
		})
	}
}

func TestCgroupMemoryLimit(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "cgroup")
	write := func(path, content string) {
		t.Helper()
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
	}
	write(filepath.Join(root, "kubepods", "pod1", "memory.max"), "671088640\n")
	write(filepath.Join(root, "memory.max"), "max\n")
	write(filepath.Join(dir, "etc", "memory.max"), "1024\n") // outside root: never read
	for _, c := range []struct {
		name, procCgroup string
		want             int64
	}{
		{"v2 in a pod", "0::/kubepods/pod1\n", 640 << 20},
		{"v2 without a limit", "0::/\n", 0},
		{"v1 only", "4:memory:/kubepods/pod1\n1:cpu:/\n", 0},
		{"a cgroup without the file", "0::/elsewhere\n", 0},
		{"a path that climbs stays below root", "0::/../etc\n", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			proc := filepath.Join(dir, "self-cgroup")
			write(proc, c.procCgroup)
			assert.Equal(t, c.want, cgroupMemoryLimit(proc, root))
		})
	}
	assert.Zero(t, cgroupMemoryLimit(filepath.Join(dir, "no-such-file"), root))
}
