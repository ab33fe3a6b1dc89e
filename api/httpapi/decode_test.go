package httpapi

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/playgate/playgate/api/catalog"
)

func TestDecodeStrict(t *testing.T) {
	for _, c := range []struct {
		name, body string
		ok         bool
	}{
		{"valid", `{"title":"t","artist":"a","visibility":"public","price_cents":0}`, true},
		{"unknown field", `{"title":"t","extra":1}`, false},
		{"trailing object", `{"title":"t"} {"title":"u"}`, false},
		{"trailing garbage", `{"title":"t"} x`, false},
		{"trailing whitespace", "{\"title\":\"t\"}\n  ", true},
		{"empty", ``, false},
		{"array", `[]`, false},
		{"wrong type", `{"price_cents":"free"}`, false},
		{"too large", `{"title":"` + strings.Repeat("x", MaxJSONBytes) + `"}`, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			var n catalog.NewTrack
			err := decodeStrict(strings.NewReader(c.body), &n)
			if c.ok {
				assert.NoError(t, err)
			} else {
				assert.Error(t, err)
			}
		})
	}
}

// Whatever a client sends, decoding never panics, and what decodes and
// validates survives a round trip unchanged.
func FuzzDecodeNewTrack(f *testing.F) {
	f.Add([]byte(`{"title":"t","artist":"a","visibility":"public","price_cents":10}`))
	f.Add([]byte(`{"title":"\u0000","visibility":"private"}`))
	f.Add([]byte(`{"title":1e400}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var n catalog.NewTrack
		if decodeStrict(bytes.NewReader(body), &n) != nil || n.Validate() != nil {
			return
		}
		again, err := json.Marshal(n)
		require.NoError(t, err)
		var m catalog.NewTrack
		require.NoError(t, decodeStrict(bytes.NewReader(again), &m))
		assert.Equal(t, n, m)
	})
}

func FuzzDecodeTrackPatch(f *testing.F) {
	f.Add([]byte(`{"title":"t"}`))
	f.Add([]byte(`{"visibility":null,"price_cents":-1}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var p catalog.TrackPatch
		if decodeStrict(bytes.NewReader(body), &p) != nil {
			return
		}
		_ = p.Validate() // must not panic on any decoded value
	})
}

// A body that ends before its Content-Length is an error, not a short
// upload that looks complete.
func TestMeteredReaderRefusesShortBodies(t *testing.T) {
	m := &meteredReader{r: strings.NewReader("12345"), hash: sha256.New(), max: 100, expected: 10}
	_, err := io.ReadAll(m)
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
	assert.ErrorIs(t, m.readErr, io.ErrUnexpectedEOF)

	m = &meteredReader{r: strings.NewReader("12345"), hash: sha256.New(), max: 100, expected: 5}
	b, err := io.ReadAll(m)
	assert.NoError(t, err)
	assert.Equal(t, "12345", string(b))

	m = &meteredReader{r: strings.NewReader("12345"), hash: sha256.New(), max: 100, expected: -1}
	_, err = io.ReadAll(m)
	assert.NoError(t, err, "chunked: the end is the end")
}
