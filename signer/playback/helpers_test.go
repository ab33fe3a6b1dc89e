package playback

import (
	"strings"

	"github.com/google/uuid"

	"github.com/playgate/playgate/signer/trackcache"
)

func trackFor(objectPath, title string) *trackcache.Track {
	t := &trackcache.Track{ID: uuid.MustParse("0190a0b4-0000-7000-8000-000000000001"), Found: true, Title: title}
	t.SetObject(strings.TrimPrefix(objectPath, "/"), "local")
	return t
}
