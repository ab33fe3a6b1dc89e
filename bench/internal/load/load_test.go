package load

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestClosedLoop(t *testing.T) {
	var calls atomic.Int64
	do := func(context.Context, int) (int, error) {
		n := calls.Add(1)
		time.Sleep(200 * time.Microsecond)
		if n%10 == 0 {
			return 0, errors.New("connection reset")
		}
		return 200, nil
	}
	var points []Point
	res := Run(context.Background(), Config{Workers: 4, Duration: 1200 * time.Millisecond, Warmup: 100 * time.Millisecond},
		do, func(p Point) { points = append(points, p) })
	require.Positive(t, res.Requests)
	assert.Equal(t, res.ByStatus[200], res.Latency.Count(), "every answer is in the histogram")
	assert.Positive(t, res.Errors, "transport errors are counted apart")
	assert.InDelta(t, 0.1, float64(res.Errors)/float64(res.Requests), 0.03)
	assert.Less(t, res.Requests, uint64(calls.Load()), "warm-up requests are not counted")
	assert.Greater(t, res.Latency.Quantile(0.5), 150*time.Microsecond)
	assert.NotEmpty(t, points, "progress once a second")
	for _, p := range points {
		assert.Positive(t, p.Rate, "a point's rate: %+v", p)
		assert.Positive(t, p.At)
	}
	assert.Greater(t, res.RPS(), 100.0)
}

// A server that stalls shows its full tail in the open model: requests
// that should have started during the stall are late, and measured from
// when they were due (no coordinated omission).
func TestOpenModelSeesStalls(t *testing.T) {
	var began atomic.Int64
	do := func(context.Context, int) (int, error) {
		now := time.Now().UnixNano()
		began.CompareAndSwap(0, now)
		if time.Duration(now-began.Load()) < 400*time.Millisecond {
			time.Sleep(100 * time.Millisecond) // stalled
		}
		return 200, nil
	}
	res := Run(context.Background(), Config{Workers: 1, Rate: 200, Duration: time.Second}, do, nil)
	assert.Greater(t, res.Latency.Quantile(0.99), 250*time.Millisecond,
		"requests queued behind the stall count from their intended start; a closed loop would report ~100 ms")
	assert.Greater(t, res.Latency.Count(), uint64(100))
}

// A session still waiting when the run ends (a paced player mid-track) is
// cut off, and its early return is neither an answer nor an error.
func TestSessionsCutByTheEndAreNotResults(t *testing.T) {
	var cut atomic.Int64
	do := func(ctx context.Context, w int) (int, error) {
		if w == 0 {
			time.Sleep(time.Millisecond)
			return 200, nil
		}
		<-ctx.Done()
		cut.Add(1)
		return 0, ctx.Err()
	}
	res := Run(context.Background(), Config{Workers: 3, Duration: 300 * time.Millisecond}, do, nil)
	assert.Equal(t, int64(2), cut.Load(), "both waiting workers saw the end")
	assert.Zero(t, res.Errors)
	assert.Equal(t, res.Requests, res.ByStatus[200], "only the finished requests count")
	assert.Positive(t, res.Requests)
}
