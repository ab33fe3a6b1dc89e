//go:build !race

package playback_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// A cache-hot play allocates nothing: routing, id parsing, the cache hit,
// signing, headers, body and metrics (SPEC §12). The race detector's
// instrumentation allocates, hence the build tag.
func TestHotPathDoesNotAllocate(t *testing.T) {
	handler, ctx := hot(t)
	allocs := testing.AllocsPerRun(2000, func() {
		ctx.Response.Reset()
		handler(ctx)
	})
	assert.Zero(t, allocs, "a cache-hot play allocates %.2f times", allocs)
}
