// Package hist is bench's latency histogram: HDR-style log-linear
// buckets, so any value from 1 µs to an hour is recorded with at most 1%
// relative error in constant memory, and histograms from many workers
// merge exactly. Not safe for concurrent use: one per worker, merged.
package hist

import (
	"math"
	"math/bits"
	"time"
)

// Values below exact (µs) have a bucket each; above, each power of two is
// split into half buckets, so a bucket is narrower than 1/half of its
// values: under 0.8% relative error.
const (
	exact  = 256
	half   = exact / 2
	maxExp = 42 // up to 2^(42+8) µs
)

// Histogram counts durations in microseconds.
type Histogram struct {
	counts   [exact + maxExp*half]uint64
	n        uint64
	min, max time.Duration
	sum      time.Duration
}

// New returns an empty histogram.
func New() *Histogram { return &Histogram{min: math.MaxInt64} }

// index maps v (µs) to its bucket.
func index(v uint64) int {
	if v < exact {
		return int(v)
	}
	exp := bits.Len64(v) - 8 // >= 1: v >> exp has 8 bits, in [128, 256)
	if exp > maxExp {
		return exact + maxExp*half - 1
	}
	return exact + (exp-1)*half + int(v>>uint(exp)) - half
}

// lowest is the smallest value (µs) in bucket i.
func lowest(i int) uint64 {
	if i < exact {
		return uint64(i)
	}
	j := i - exact
	exp := j/half + 1
	return uint64(j%half+half) << uint(exp)
}

// Record adds one observation.
func (h *Histogram) Record(d time.Duration) {
	us := uint64(max(d.Microseconds(), 1))
	h.counts[index(us)]++
	h.n++
	h.sum += d
	h.min = min(h.min, d)
	h.max = max(h.max, d)
}

// Merge adds o's observations to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	if o.n > 0 {
		h.min = min(h.min, o.min)
		h.max = max(h.max, o.max)
	}
}

// Count is the number of observations.
func (h *Histogram) Count() uint64 { return h.n }

// Max is the largest observation, exactly.
func (h *Histogram) Max() time.Duration {
	if h.n == 0 {
		return 0
	}
	return h.max
}

// Mean is the average observation.
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return h.sum / time.Duration(h.n)
}

// Quantile returns the value at quantile q (0 < q <= 1): the smallest
// recorded value such that a fraction q of observations are at most it,
// within the bucket precision, and never above the true maximum.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			// The bucket's upper edge, clamped to what was seen.
			v := time.Duration(lowest(i)) * time.Microsecond
			if i >= exact && i+1 < len(h.counts) {
				v = time.Duration(lowest(i+1)-1) * time.Microsecond
			}
			return min(max(v, h.min), h.max)
		}
	}
	return h.max
}
