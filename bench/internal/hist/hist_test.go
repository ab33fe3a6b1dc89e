package hist

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Buckets tile the values: index and lowest agree at every edge.
func TestBuckets(t *testing.T) {
	for i := 1; i < exact+maxExp*half-1; i++ {
		lo := lowest(i)
		require.Equal(t, i, index(lo), "bucket %d starts at %d", i, lo)
		require.Equal(t, i-1, index(lo-1), "the value before bucket %d is in the one before", i)
		width := lowest(i+1) - lo
		if lo >= exact {
			assert.Less(t, float64(width)/float64(lo), 0.008, "bucket %d is under 0.8%% wide", i)
		}
	}
}

// Quantiles against a sorted reference, on latency-like distributions.
func TestQuantilesMatchASortedReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for name, gen := range map[string]func() time.Duration{
		"uniform 0-10ms": func() time.Duration { return time.Duration(rng.Int64N(int64(10 * time.Millisecond))) },
		"lognormal ~1ms": func() time.Duration { return time.Duration(math.Exp(rng.NormFloat64()) * float64(time.Millisecond)) },
		"bimodal, a tail": func() time.Duration {
			return []time.Duration{300 * time.Microsecond, 80 * time.Millisecond}[min(rng.IntN(100), 1)]
		},
	} {
		t.Run(name, func(t *testing.T) {
			h := New()
			var ref []time.Duration
			for i := 0; i < 100_000; i++ {
				d := gen()
				h.Record(d)
				ref = append(ref, max(d, time.Microsecond))
			}
			slices.Sort(ref)
			for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 1} {
				want := ref[int(math.Ceil(q*float64(len(ref))))-1]
				got := h.Quantile(q)
				assert.InEpsilon(t, float64(want), float64(got), 0.01, "q=%v: want %v got %v", q, want, got)
			}
			assert.Equal(t, ref[len(ref)-1].Microseconds(), h.Max().Microseconds())
			assert.EqualValues(t, len(ref), h.Count())
		})
	}
}

func TestMergeIsExact(t *testing.T) {
	a, b, all := New(), New(), New()
	for i := 1; i <= 1000; i++ {
		d := time.Duration(i) * 37 * time.Microsecond
		all.Record(d)
		if i%2 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	a.Merge(b)
	for _, q := range []float64{0.5, 0.99, 1} {
		assert.Equal(t, all.Quantile(q), a.Quantile(q))
	}
	assert.Equal(t, all.Mean(), a.Mean())
	assert.Zero(t, New().Quantile(0.5), "an empty histogram")
}
