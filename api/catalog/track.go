// Package catalog is playgate's catalogue of tracks, share links and
// licences: the domain types, their validation, and the PostgreSQL store
// behind the catalog API.
package catalog

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Errors the store returns; the HTTP layer maps them to problems.
var (
	ErrNotFound        = errors.New("catalog: not found")
	ErrVersionMismatch = errors.New("catalog: version mismatch")
	ErrConflict        = errors.New("catalog: conflicting change")
)

// Visibility says who may play a track (SPEC §4.2).
type Visibility string

// The visibilities.
const (
	Public   Visibility = "public"
	Unlisted Visibility = "unlisted"
	Private  Visibility = "private"
)

// Valid reports whether v is a known visibility.
func (v Visibility) Valid() bool { return v == Public || v == Unlisted || v == Private }

// HLSStatus is where a track's HLS package is in its life.
type HLSStatus string

// The HLS states.
const (
	HLSNone       HLSStatus = "none"
	HLSQueued     HLSStatus = "queued"
	HLSProcessing HLSStatus = "processing"
	HLSReady      HLSStatus = "ready"
	HLSFailed     HLSStatus = "failed"
)

// Track is one row of the tracks table as the API shows it.
type Track struct {
	ID         uuid.UUID  `json:"id"`
	OwnerID    string     `json:"owner_id"`
	Title      string     `json:"title"`
	Artist     string     `json:"artist"`
	DurationMS *int64     `json:"duration_ms"`
	Visibility Visibility `json:"visibility"`
	PriceCents int64      `json:"price_cents"`

	// Audio: all set together once the original is stored, else all nil.
	StorageBackend *string `json:"storage_backend"`
	ObjectKey      *string `json:"object_key"`
	ContentType    *string `json:"content_type"`
	SizeBytes      *int64  `json:"size_bytes"`
	SHA256         *string `json:"sha256"`

	HLSStatus   HLSStatus `json:"hls_status"`
	HLSPrefix   *string   `json:"hls_prefix"`
	HLSError    *string   `json:"hls_error"`
	HLSProgress int       `json:"hls_progress"`
	// HLSLossless: the package also has the lossless tier, which the
	// signer's /hls?quality=lossless offers.
	HLSLossless bool `json:"hls_lossless"`

	Version   int64      `json:"version"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
	DeletedAt *time.Time `json:"-"`
}

// HasAudio reports whether the original file is stored.
func (t *Track) HasAudio() bool { return t.ObjectKey != nil }

// Limits on what a client may write.
const (
	MaxTitleLen   = 300 // characters
	MaxArtistLen  = 300
	MaxPriceCents = 1_000_000_00
)

// NewTrack is what a client sends to create a track.
type NewTrack struct {
	Title      string     `json:"title"`
	Artist     string     `json:"artist"`
	Visibility Visibility `json:"visibility"`
	PriceCents int64      `json:"price_cents"`
}

// Validate reports every problem at once, naming fields.
func (n *NewTrack) Validate() error {
	var errs []error
	errs = append(errs, validateText("title", n.Title, MaxTitleLen))
	errs = append(errs, validateText("artist", n.Artist, MaxArtistLen))
	if !n.Visibility.Valid() {
		errs = append(errs, fmt.Errorf("visibility must be public, unlisted or private, not %q", n.Visibility))
	}
	errs = append(errs, validatePrice(n.PriceCents))
	return errors.Join(errs...)
}

// TrackPatch is a partial update; nil fields are left alone.
type TrackPatch struct {
	Title      *string     `json:"title"`
	Artist     *string     `json:"artist"`
	Visibility *Visibility `json:"visibility"`
	PriceCents *int64      `json:"price_cents"`
}

// Validate reports every problem at once.
func (p *TrackPatch) Validate() error {
	var errs []error
	if p.Title == nil && p.Artist == nil && p.Visibility == nil && p.PriceCents == nil {
		return errors.New("the patch changes nothing: send title, artist, visibility or price_cents")
	}
	if p.Title != nil {
		errs = append(errs, validateText("title", *p.Title, MaxTitleLen))
	}
	if p.Artist != nil {
		errs = append(errs, validateText("artist", *p.Artist, MaxArtistLen))
	}
	if p.Visibility != nil && !p.Visibility.Valid() {
		errs = append(errs, fmt.Errorf("visibility must be public, unlisted or private, not %q", *p.Visibility))
	}
	if p.PriceCents != nil {
		errs = append(errs, validatePrice(*p.PriceCents))
	}
	return errors.Join(errs...)
}

func validateText(field, s string, max int) error {
	switch {
	case strings.TrimSpace(s) == "":
		return fmt.Errorf("%s is required", field)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s is not valid UTF-8", field)
	case utf8.RuneCountInString(s) > max:
		return fmt.Errorf("%s is longer than %d characters", field, max)
	case strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return fmt.Errorf("%s contains control characters", field)
	}
	return nil
}

// MaxLabelLen bounds user ids and licence sources.
const MaxLabelLen = 256

// ValidateLabel checks an identifier-like string: a user id (a JWT
// subject) or a licence source.
func ValidateLabel(field, s string) error {
	if len(s) > MaxLabelLen {
		return fmt.Errorf("%s is longer than %d bytes", field, MaxLabelLen)
	}
	return validateText(field, s, MaxLabelLen)
}

func validatePrice(p int64) error {
	if p < 0 || p > MaxPriceCents {
		return fmt.Errorf("price_cents must be between 0 and %d", MaxPriceCents)
	}
	return nil
}

// Audio describes a stored original.
type Audio struct {
	Backend     string
	Key         string
	ContentType string
	Size        int64
	SHA256      string // lower-case hex
}

// OriginalKey is the content-addressed key of an original (SPEC §6).
func OriginalKey(track uuid.UUID, sha256hex, ext string) string {
	return "tracks/" + track.String() + "/" + sha256hex + "." + ext
}

// HLSDir is the prefix under which every HLS package of a track lives,
// "hls/{id}/" (SPEC §6): one package is HLSDir(id) + its package id.
func HLSDir(id uuid.UUID) string { return "hls/" + id.String() + "/" }

// UploadsPrefix holds uploads on their way in: each is stored under a
// key of its own here, then renamed to its OriginalKey. No row ever
// names a key under it, so what is left here is an interrupted upload's.
const UploadsPrefix = "uploads/"

// UploadKey is a key for one upload of track's audio; random makes it
// unique among concurrent uploads.
func UploadKey(track uuid.UUID, random string) string {
	return UploadsPrefix + track.String() + "/" + random
}

// Share is a share link; the token itself is never stored.
type Share struct {
	ID        uuid.UUID  `json:"id"`
	TrackID   uuid.UUID  `json:"track_id"`
	CreatedBy string     `json:"created_by"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt time.Time  `json:"expires_at"`
	RevokedAt *time.Time `json:"revoked_at"`
}

// License lets a user download a paid track.
type License struct {
	UserID    string     `json:"user_id"`
	TrackID   uuid.UUID  `json:"track_id"`
	GrantedAt time.Time  `json:"granted_at"`
	Source    string     `json:"source"`
	RevokedAt *time.Time `json:"revoked_at"`
}

// ParseID parses a track, share or package id: a canonical UUID.
func ParseID(s string) (uuid.UUID, error) {
	// uuid.Parse also accepts braces, urn: and unhyphenated forms; ids
	// in paths take the 36-character hyphenated form only.
	if len(s) != 36 {
		return uuid.Nil, fmt.Errorf("id %q is not a UUID", truncate(s, 64))
	}
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, fmt.Errorf("id %q is not a UUID", truncate(s, 64))
	}
	return id, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// CDNPaths are the object paths a CDN may hold for the track: its
// original and, as a prefix, every package of it.
func (t Track) CDNPaths() []string {
	paths := []string{HLSDir(t.ID)}
	if t.ObjectKey != nil {
		paths = append([]string{*t.ObjectKey}, paths...)
	}
	return paths
}
