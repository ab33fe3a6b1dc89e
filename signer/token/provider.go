package token

import (
	"errors"
	"fmt"
	"strings"
)

// Providers lists the CDN_PROVIDER values this build signs for.
var Providers = []string{"bunny", "bunny-sha256", "bunny-md5", "origin"}

// Config selects and keys a provider.
type Config struct {
	Provider    string
	BaseURL     string
	Key         []byte
	PreviousKey []byte // also accepted when verifying
}

// New builds the signer for cfg.Provider. "origin" is Bunny's HMAC
// scheme on the origin's own URL, for installs without a CDN.
func New(cfg Config) (*Bunny, error) {
	switch cfg.Provider {
	case "bunny", "bunny-sha256", "bunny-md5":
		scheme, _ := ParseBunnyScheme(cfg.Provider)
		return NewBunny(scheme, cfg.BaseURL, cfg.Key, cfg.PreviousKey)
	case "origin":
		return NewBunny(BunnyHMAC, cfg.BaseURL, cfg.Key, cfg.PreviousKey)
	}
	return nil, fmt.Errorf("token: unknown provider %q (known: %s)", cfg.Provider, strings.Join(Providers, ", "))
}

// NewUnchecked is New without the key-length rule, for the command line,
// where operators reproduce providers' examples with short demo keys.
func NewUnchecked(provider, baseURL string, key []byte, previous ...[]byte) (*Bunny, error) {
	if len(key) == 0 {
		return nil, errors.New("token: a key is required")
	}
	b, err := New(Config{Provider: provider, BaseURL: baseURL, Key: []byte("placeholder-key-of-length")})
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
