// Package token holds the signed-URL schemes of the CDNs playgate signs
// for (SPEC §4.4). The signer uses it to sign; the origin and the edge
// tests use it to verify exactly as the CDN would.
//
// Signing is on the signer's hot path: a Signer appends to a caller's
// buffer and allocates nothing.
package token

import (
	"errors"
	"net/netip"
	"time"
)

// Errors a Verifier returns. They are sentinels so that rejecting a
// forged request costs no allocation and no stack capture.
var (
	ErrMissing   = errors.New("token: no token in the URL")
	ErrMalformed = errors.New("token: malformed token or expiry")
	ErrExpired   = errors.New("token: expired")
	ErrSignature = errors.New("token: signature does not match")
	ErrScope     = errors.New("token: path outside the token's directory")
	ErrRequest   = errors.New("token: cannot sign this request")
)

// Request is what to sign.
type Request struct {
	// Path is the URL path of the object, already escaped, starting "/".
	Path string
	// Expires is when the URL stops working, in Unix seconds.
	Expires int64
	// TokenPath, when set, is the directory prefix the token opens (HLS
	// packages: one token for every playlist and segment below it).
	TokenPath string
	// PathForm puts the token in a leading path segment instead of the
	// query, so that relative URIs in a playlist inherit it.
	PathForm bool
	// IP binds the URL to one client; the zero Addr leaves it unbound.
	IP netip.Addr

	// Download, when set, asks the origin to serve the object as an
	// attachment with this file name (a signed "download" parameter).
	Download string

	// Bunny's optional restrictions, signed into the token.
	Countries        string // token_countries: allowed ISO codes, comma-separated
	CountriesBlocked string // token_countries_blocked
	Limit            int64  // limit: speed limit in kB/s, 0 = none
	IgnoreParams     bool   // token_ignore_params: other query parameters are not signed
}

// Signer produces signed URLs for one provider.
type Signer interface {
	// AppendURL appends the absolute signed URL for r to dst.
	AppendURL(dst []byte, r *Request) ([]byte, error)
}

// Verifier checks signed URLs the way the provider's edge does.
type Verifier interface {
	// Verify checks requestURI (path and query as received) for a client
	// at now, and returns the object path with the token removed.
	Verify(requestURI string, client netip.Addr, now time.Time) (string, error)
}

// withinTokenPath reports whether path lies inside the directory
// tokenPath names, on a "/" boundary: "/hls/ab" opens "/hls/ab" and
// "/hls/ab/x", never "/hls/abc".
func withinTokenPath(path, tokenPath string) bool {
	if len(path) < len(tokenPath) || path[:len(tokenPath)] != tokenPath {
		return false
	}
	return len(path) == len(tokenPath) || tokenPath[len(tokenPath)-1] == '/' || path[len(tokenPath)] == '/'
}

// ExpiryBucket rounds now+ttl up to a multiple of bucket, so the same
// caller gets the same URL for a while (browsers and caches reuse it).
func ExpiryBucket(now time.Time, ttl, bucket time.Duration) int64 {
	exp := now.Add(ttl).Unix()
	if b := int64(bucket / time.Second); b > 1 {
		if r := exp % b; r != 0 {
			exp += b - r
		}
	}
	return exp
}
