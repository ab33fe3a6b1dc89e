package playback_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/playgate/playgate/api/catalog"
)

const playerOrigin = "https://player.example"

// A web player on another origin reads every answer of the signer: its
// redirects, its errors, and what fasthttp refuses before a handler runs.
func TestCORSOnEveryAnswer(t *testing.T) {
	h := newHarness(t, options{})
	stream := "/v1/tracks/" + h.track("alice", catalog.Public, 0, false).ID.String() + "/stream"
	for _, c := range []struct {
		name   string
		path   string
		header []string
		status int
	}{
		{"a redirect", stream, nil, http.StatusFound},
		{"an unknown track", "/v1/tracks/" + uuid.NewString() + "/stream", nil, http.StatusNotFound},
		{"no such route", "/v1/nowhere", nil, http.StatusNotFound},
		{"headers too large", stream, []string{"X-Pad", strings.Repeat("a", 9<<10)}, http.StatusRequestHeaderFieldsTooLarge},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := h.get(c.path, "", append([]string{"Origin", playerOrigin}, c.header...)...)
			require.Equal(t, c.status, r.status, "body %s", r.body)
			assert.Equal(t, "*", r.header.Get("Access-Control-Allow-Origin"))
		})
	}
	var out strings.Builder
	h.metrics.WritePrometheus(&out)
	assert.Contains(t, out.String(), `playgate_signer_requests_total{route="refused",status="431"} 1`+"\n",
		"what fasthttp refuses is counted")
}

// A preflight (an Authorization header, a Range) is answered without
// a track being looked up.
func TestCORSPreflight(t *testing.T) {
	h := newHarness(t, options{})
	req, err := http.NewRequest(http.MethodOptions, "http://signer/v1/tracks/"+uuid.NewString()+"/stream", nil)
	require.NoError(t, err)
	req.Header.Set("Origin", playerOrigin)
	req.Header.Set("Access-Control-Request-Method", "GET")
	req.Header.Set("Access-Control-Request-Headers", "authorization, range")
	resp, err := h.client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNoContent, resp.StatusCode)
	assert.Equal(t, "*", resp.Header.Get("Access-Control-Allow-Origin"))
	assert.Contains(t, resp.Header.Get("Access-Control-Allow-Methods"), "GET")
	for _, name := range []string{"Authorization", "Range"} {
		assert.Contains(t, resp.Header.Get("Access-Control-Allow-Headers"), name)
	}
	assert.Zero(t, h.queries.tracks.Load(), "no database query for a preflight")
}

// Named origins: the allowed one is echoed, with Vary so that a cache
// does not hand it to another; any other gets no CORS headers.
func TestCORSNamedOrigins(t *testing.T) {
	h := newHarness(t, options{corsOrigins: []string{playerOrigin}})
	stream := "/v1/tracks/" + h.track("alice", catalog.Public, 0, false).ID.String() + "/stream"

	r := h.get(stream, "", "Origin", playerOrigin)
	require.Equal(t, http.StatusFound, r.status)
	assert.Equal(t, playerOrigin, r.header.Get("Access-Control-Allow-Origin"))
	assert.Contains(t, r.header.Values("Vary"), "Origin")

	r = h.get(stream, "", "Origin", "https://elsewhere.example")
	require.Equal(t, http.StatusFound, r.status)
	assert.Empty(t, r.header.Get("Access-Control-Allow-Origin"))
}
