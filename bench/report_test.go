package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/playgate/playgate/bench/internal/hist"
	"github.com/playgate/playgate/bench/internal/load"
)

func TestHTMLReportPlotsEveryMeasuredTargetInsideItsFrame(t *testing.T) {
	h := hist.New()
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	res := &load.Result{Latency: h, Timeline: []load.Point{
		{At: time.Second, P50: time.Millisecond, P99: 3 * time.Millisecond},
		{At: 2 * time.Second, P50: 2 * time.Millisecond, P99: 9 * time.Millisecond},
	}}
	path := filepath.Join(t.TempDir(), "r.html")
	reports := []report{{Name: "signer"}, {Name: "<b>unmeasured</b>"}}
	require.NoError(t, htmlReport(path, "bench <x>", map[string]*load.Result{"signer": res}, reports))

	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	page := string(raw)
	require.Contains(t, page, "<title>bench &lt;x&gt;</title>")
	require.NotContains(t, page, "<b>unmeasured</b>", "names are escaped")
	require.Equal(t, 2, strings.Count(page, "<svg "), "one time plot and one percentile plot for the measured target")
	require.Equal(t, 3, strings.Count(page, "<polyline"), "p50, p99 and the percentile curve")

	// Every point lies in the frame: x in [55, 55+plotW], y in [20, 20+plotH].
	pts := regexp.MustCompile(`(\d+\.\d),(\d+\.\d) `).FindAllStringSubmatch(page, -1)
	require.Len(t, pts, 2+2+12)
	for _, p := range pts {
		x, _ := strconv.ParseFloat(p[1], 64)
		y, _ := strconv.ParseFloat(p[2], 64)
		require.True(t, x >= 55 && x <= 55+plotW, "x %v", x)
		require.True(t, y >= 20 && y <= 20+plotH, "y %v", y)
	}
}

func TestHTMLReportWithoutPathWritesNothing(t *testing.T) {
	require.NoError(t, htmlReport("", "t", nil, nil))
}
