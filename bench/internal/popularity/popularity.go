// Package popularity picks which track a simulated player asks for:
// Zipf-distributed ranks (a few tracks are most of the plays, as on every
// music service), mixed with the kinds of request a signer sees.
package popularity

import (
	"errors"
	"math"
	"math/rand"
)

// Zipf draws ranks 0..n-1 with P(k) proportional to 1/(k+1)^s.
type Zipf struct {
	z *rand.Zipf
}

// NewZipf builds a generator; s must be > 1 (math/rand's Zipf).
func NewZipf(seed int64, s float64, n uint64) (*Zipf, error) {
	if s <= 1 || n == 0 {
		return nil, errors.New("popularity: zipf needs s > 1 and n > 0")
	}
	return &Zipf{z: rand.NewZipf(rand.New(rand.NewSource(seed)), s, 1, n-1)}, nil
}

// Rank draws the next rank.
func (z *Zipf) Rank() uint64 { return z.z.Uint64() }

// Probability is the exact P(rank = k) for s and n.
func Probability(s float64, n, k uint64) float64 {
	var norm float64
	for i := uint64(0); i < n; i++ {
		norm += 1 / math.Pow(float64(i+1), s)
	}
	return 1 / math.Pow(float64(k+1), s) / norm
}
