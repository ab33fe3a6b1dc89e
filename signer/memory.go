package main

import (
	"bufio"
	"bytes"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/playgate/playgate/signer/trackcache"
)

// warnAboutMemory logs what the memory settings would make go wrong
// hours after start, once the track cache has filled: a container limit
// the Go runtime does not know of, or a cache too big for the heap it
// may have. goLimit is GOMEMLIMIT's (math.MaxInt64: not set),
// cgroupLimit the container's (0: none).
func warnAboutMemory(log *slog.Logger, cacheBytes, goLimit, cgroupLimit int64) {
	const mib = 1 << 20
	if cgroupLimit > 0 && goLimit == math.MaxInt64 {
		// Between collections Go lets the heap reach twice what is live:
		// with a full cache that is past the limit, and the kernel kills
		// the process instead of the collector running sooner.
		log.Warn("the container has a memory limit and GOMEMLIMIT is not set: set GOMEMLIMIT to about 85% of the limit",
			"limit_mib", cgroupLimit/mib)
	}
	limit := goLimit
	if cgroupLimit > 0 && cgroupLimit < limit {
		limit = cgroupLimit
	}
	if limit != math.MaxInt64 && !trackcache.FitsIn(cacheBytes, limit) {
		log.Warn("a full track cache takes more of the memory limit than the collector can work in: lower SIGNER_CACHE_BYTES or raise the limit",
			"cache_bytes", cacheBytes, "full_cache_heap_mib", trackcache.FullHeap(cacheBytes)/mib, "limit_mib", limit/mib)
	}
}

// cgroupMemoryLimit is the memory limit of this process's cgroup (v2),
// 0 when there is none or it cannot be read. procCgroup is
// /proc/self/cgroup and root /sys/fs/cgroup, parameters for tests.
func cgroupMemoryLimit(procCgroup, root string) int64 {
	b, err := os.ReadFile(procCgroup)
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		// cgroup v2's line is "0::/path"; v1's name their controllers.
		path, ok := strings.CutPrefix(sc.Text(), "0::")
		if !ok {
			continue
		}
		limit, err := os.ReadFile(filepath.Join(root, filepath.Clean("/"+path), "memory.max"))
		if err != nil {
			return 0
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(limit)), 10, 64)
		if err != nil { // "max": no limit
			return 0
		}
		return n
	}
	return 0
}
