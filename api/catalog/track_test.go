package catalog

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestParseID(t *testing.T) {
	good := "0190a0b4-0000-7000-8000-000000000001"
	id, err := ParseID(good)
	assert.NoError(t, err)
	assert.Equal(t, good, id.String())
	for _, bad := range []string{"", "x", "{" + good + "}", "urn:uuid:" + good, strings.ReplaceAll(good, "-", ""), good + "0", "../../etc/passwd"} {
		_, err := ParseID(bad)
		assert.Error(t, err, bad)
	}
}

func FuzzParseID(f *testing.F) {
	f.Add("0190a0b4-0000-7000-8000-000000000001")
	f.Add("{0190a0b4-0000-7000-8000-000000000001}")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		if err != nil {
			return
		}
		// What parses is the canonical spelling, give or take case.
		assert.Equal(t, strings.ToLower(s), id.String())
	})
}

func TestNewTrackValidate(t *testing.T) {
	ok := NewTrack{Title: "t", Artist: "a", Visibility: Public}
	assert.NoError(t, ok.Validate())
	bad := NewTrack{Title: " ", Artist: strings.Repeat("a", MaxArtistLen+1), Visibility: "secret", PriceCents: -1}
	err := bad.Validate()
	for _, want := range []string{"title is required", "artist is longer", "visibility must be", "price_cents must be"} {
		assert.ErrorContains(t, err, want)
	}
	assert.Error(t, (&NewTrack{Title: "a\x07b", Artist: "a", Visibility: Public}).Validate(), "control characters")
}
