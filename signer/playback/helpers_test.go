package playback

import (
	"github.com/google/uuid"

	"github.com/playgate/playgate/signer/trackcache"
)

func trackFor(objectPath, title string) *trackcache.Track {
	return &trackcache.Track{ID: uuid.MustParse("0190a0b4-0000-7000-8000-000000000001"), Found: true, ObjectPath: objectPath, Title: title}
}
