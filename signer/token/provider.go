package token

import (
	"crypto"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Providers lists the CDN_PROVIDER values this build signs for.
var Providers = []string{"bunny", "bunny-sha256", "bunny-md5", "cloudflare", "cloudfront", "s3presign", "origin"}

// Config selects and keys a provider.
type Config struct {
	Provider    string
	BaseURL     string
	Key         []byte
	PreviousKey []byte // also accepted when verifying

	// cloudflare: the WAF rule's lifetime.
	TTL time.Duration
	// cloudfront.
	KeyPairID     string
	PrivateKeyPEM []byte
	SHA256        bool
	// s3presign.
	S3     *s3.Client
	Bucket string
}

// Capabilities says what a provider's URLs can express.
type Capabilities struct {
	// PathTokens: a token in a leading path segment that opens a whole
	// directory, so relative URIs in playlists inherit it (Bunny). Other
	// providers' HLS goes through playlists the signer rewrites.
	PathTokens bool
	// DirectoryPolicy: one signature can open every object below a
	// directory, carried in the query (CloudFront's wildcard policy).
	DirectoryPolicy bool
	// BindIP: URLs can be bound to a client address.
	BindIP bool
}

// CapabilitiesOf reports what provider can do.
func CapabilitiesOf(provider string) Capabilities {
	switch provider {
	case "bunny", "bunny-sha256", "origin":
		return Capabilities{PathTokens: true, DirectoryPolicy: true, BindIP: true}
	case "bunny-md5":
		return Capabilities{BindIP: true}
	case "cloudfront":
		return Capabilities{DirectoryPolicy: true, BindIP: true}
	}
	return Capabilities{}
}

// New builds the signer for cfg.Provider. "origin" is Bunny's HMAC
// scheme on the origin's own URL, for installs without a CDN.
func New(cfg Config) (Signer, error) {
	switch cfg.Provider {
	case "bunny", "bunny-sha256", "bunny-md5":
		scheme, _ := ParseBunnyScheme(cfg.Provider)
		return NewBunny(scheme, cfg.BaseURL, cfg.Key, cfg.PreviousKey)
	case "origin":
		return NewBunny(BunnyHMAC, cfg.BaseURL, cfg.Key, cfg.PreviousKey)
	case "cloudflare":
		return NewCloudflare(cfg.BaseURL, cfg.TTL, cfg.Key, cfg.PreviousKey)
	case "cloudfront":
		hash := crypto.SHA1
		if cfg.SHA256 {
			hash = crypto.SHA256
		}
		return NewCloudFront(cfg.BaseURL, cfg.KeyPairID, cfg.PrivateKeyPEM, hash)
	case "s3presign":
		if cfg.S3 == nil || cfg.Bucket == "" {
			return nil, errors.New("token: s3presign needs S3_BUCKET and its credentials")
		}
		return NewS3Presign(cfg.S3, cfg.Bucket), nil
	}
	return nil, fmt.Errorf("token: unknown provider %q (known: %s)", cfg.Provider, strings.Join(Providers, ", "))
}

// NewUnchecked is NewBunny for a provider name without the key-length rule, for the command line,
// where operators reproduce providers' examples with short demo keys.
func NewUnchecked(provider, baseURL string, key []byte, previous ...[]byte) (*Bunny, error) {
	if len(key) == 0 {
		return nil, errors.New("token: a key is required")
	}
	scheme := BunnyHMAC
	if provider != "origin" {
		var err error
		if scheme, err = ParseBunnyScheme(provider); err != nil {
			return nil, err
		}
	}
	b, err := NewBunny(scheme, baseURL, []byte("placeholder-key-of-length"))
	if err != nil {
		return nil, err
	}
	b.keys = []*bunnyKey{newBunnyKey(b.scheme, key)}
	for _, p := range previous {
		if len(p) > 0 {
			b.keys = append(b.keys, newBunnyKey(b.scheme, p))
		}
	}
	return b, nil
}
