package popularity

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The generator's frequencies match Zipf's law within sampling error.
func TestZipfDistribution(t *testing.T) {
	const n, samples, s = 1000, 200_000, 1.1
	z, err := NewZipf(7, s, n)
	require.NoError(t, err)
	counts := make([]int, n)
	for i := 0; i < samples; i++ {
		k := z.Rank()
		require.Less(t, k, uint64(n))
		counts[k]++
	}
	for _, k := range []uint64{0, 1, 2, 9, 99} {
		want := Probability(s, n, k) * samples
		// Four standard deviations of a binomial count.
		tolerance := 4 * math.Sqrt(want)
		assert.InDelta(t, want, float64(counts[k]), tolerance, "rank %d", k)
	}
	assert.Greater(t, counts[0], counts[9]*10, "the head dominates")
	_, err = NewZipf(1, 1, n)
	assert.Error(t, err, "s must exceed 1")
}
