package main

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/playgate/playgate/internal/envcfg"
	"github.com/playgate/playgate/origin/storage"
	"github.com/playgate/playgate/signer/token"
)

// Config is the signer's environment (SPEC §4, §7; every variable is in
// deploy/env.example).
type Config struct {
	Addr            string `envconfig:"SIGNER_ADDR" default:":8081"`
	DatabaseURL     string `envconfig:"DATABASE_URL"`
	DatabaseReadURL string `envconfig:"DATABASE_READ_URL"`

	AuthJWTSecret    string `envconfig:"AUTH_JWT_SECRET"`
	AuthJWTPublicKey string `envconfig:"AUTH_JWT_PUBLIC_KEY"`
	AuthJWTIssuer    string `envconfig:"AUTH_JWT_ISSUER"`
	AuthJWTAudience  string `envconfig:"AUTH_JWT_AUDIENCE"`

	CDNEnabled             bool          `envconfig:"CDN_ENABLED"`
	CDNProvider            string        `envconfig:"CDN_PROVIDER" default:"bunny"`
	CDNBaseURL             string        `envconfig:"CDN_BASE_URL"`
	CDNSecurityKey         string        `envconfig:"CDN_SECURITY_KEY"`
	CDNSecurityKeyPrevious string        `envconfig:"CDN_SECURITY_KEY_PREVIOUS"`
	CDNTokenTTL            time.Duration `envconfig:"CDN_TOKEN_TTL" default:"1h"`
	CDNTokenBucket         time.Duration `envconfig:"CDN_TOKEN_BUCKET" default:"5m"`
	CDNTokenBindIP         bool          `envconfig:"CDN_TOKEN_BIND_IP"`
	TrustedProxies         []string      `envconfig:"TRUSTED_PROXIES"`
	CORSOrigins            []string      `envconfig:"CORS_ORIGINS" default:"*"`

	// CloudFront (CDN_PROVIDER=cloudfront).
	CloudFrontKeyPairID  string `envconfig:"CLOUDFRONT_KEY_PAIR_ID"`
	CloudFrontPrivateKey string `envconfig:"CLOUDFRONT_PRIVATE_KEY"` // PEM, inline or a file path
	CloudFrontHash       string `envconfig:"CLOUDFRONT_HASH" default:"sha1"`

	// Without a CDN the signer signs the origin's own URLs (provider
	// "origin"), which the origin verifies.
	OriginPublicURL string `envconfig:"ORIGIN_PUBLIC_URL" default:"http://localhost:8082"`
	OriginTokenKey  string `envconfig:"ORIGIN_TOKEN_KEY"`

	// Storage, to read HLS master playlists for /master.m3u8.
	storage.Env

	CacheBytes  int64         `envconfig:"SIGNER_CACHE_BYTES" default:"335544320"`
	NegativeTTL time.Duration `envconfig:"SIGNER_NEGATIVE_TTL" default:"10s"`
	GrantTTL    time.Duration `envconfig:"SIGNER_GRANT_TTL" default:"5m"`

	LogLevel string `envconfig:"LOG_LEVEL" default:"info"`
}

// Validate reports every problem at once. Above all it refuses to start
// in a state that could emit an unsigned or wrongly signed URL (SPEC §4.5).
func (c *Config) Validate() error {
	var errs []error
	if c.DatabaseURL == "" {
		errs = append(errs, errors.New("DATABASE_URL is required"))
	}
	if c.CDNEnabled {
		if !slices.Contains(token.Providers, c.CDNProvider) {
			errs = append(errs, fmt.Errorf("CDN_PROVIDER %q is unknown (known: %s)", c.CDNProvider, strings.Join(token.Providers, ", ")))
		}
		if c.CDNProvider != "s3presign" { // presigned URLs go to the bucket itself
			if err := absoluteURL(c.CDNBaseURL); err != nil {
				errs = append(errs, fmt.Errorf("CDN_BASE_URL: %w", err))
			}
		}
		switch c.CDNProvider {
		case "cloudfront":
			if c.CloudFrontKeyPairID == "" || c.CloudFrontPrivateKey == "" {
				errs = append(errs, errors.New("CDN_PROVIDER=cloudfront needs CLOUDFRONT_KEY_PAIR_ID and CLOUDFRONT_PRIVATE_KEY"))
			}
			if c.CloudFrontHash != "sha1" && c.CloudFrontHash != "sha256" {
				errs = append(errs, errors.New("CLOUDFRONT_HASH must be sha1 or sha256"))
			}
		case "s3presign":
			if c.S3Bucket == "" {
				errs = append(errs, errors.New("CDN_PROVIDER=s3presign needs S3_BUCKET"))
			}
		default:
			if len(c.CDNSecurityKey) < token.MinKeyLen {
				errs = append(errs, fmt.Errorf("CDN_SECURITY_KEY must be set (at least %d characters) when CDN_ENABLED=true", token.MinKeyLen))
			}
		}
		if c.CDNTokenBindIP && !token.CapabilitiesOf(c.CDNProvider).BindIP {
			errs = append(errs, fmt.Errorf("CDN_TOKEN_BIND_IP=true but CDN_PROVIDER=%s cannot bind URLs to an address", c.CDNProvider))
		}
		if c.CDNSecurityKeyPrevious != "" && len(c.CDNSecurityKeyPrevious) < token.MinKeyLen {
			errs = append(errs, fmt.Errorf("CDN_SECURITY_KEY_PREVIOUS must be at least %d characters", token.MinKeyLen))
		}
	} else {
		if err := absoluteURL(c.OriginPublicURL); err != nil {
			errs = append(errs, fmt.Errorf("ORIGIN_PUBLIC_URL: %w", err))
		}
		if len(c.OriginTokenKey) < token.MinKeyLen {
			errs = append(errs, fmt.Errorf("ORIGIN_TOKEN_KEY must be set (at least %d characters) when CDN_ENABLED=false: the origin verifies the signer's URLs", token.MinKeyLen))
		}
	}
	if c.CDNTokenTTL < time.Minute {
		errs = append(errs, errors.New("CDN_TOKEN_TTL must be at least 1m"))
	}
	if c.CDNTokenBucket < 0 || c.CDNTokenBucket > c.CDNTokenTTL {
		errs = append(errs, errors.New("CDN_TOKEN_BUCKET must be between 0 and CDN_TOKEN_TTL"))
	}
	if _, err := c.trustedProxies(); err != nil {
		errs = append(errs, err)
	}
	if c.CacheBytes < 1<<20 {
		errs = append(errs, errors.New("SIGNER_CACHE_BYTES must be at least 1 MiB"))
	}
	if err := c.Env.Validate(""); err != nil {
		errs = append(errs, err)
	}
	if c.NegativeTTL <= 0 || c.GrantTTL <= 0 {
		errs = append(errs, errors.New("SIGNER_NEGATIVE_TTL and SIGNER_GRANT_TTL must be positive"))
	}
	return errors.Join(errs...)
}

// tokenConfig is the provider to sign with; s3 is the bucket's client
// (s3presign).
func (c *Config) tokenConfig(s3 *storage.S3) (token.Config, error) {
	if !c.CDNEnabled {
		return token.Config{Provider: "origin", BaseURL: c.OriginPublicURL, Key: []byte(c.OriginTokenKey)}, nil
	}
	tc := token.Config{Provider: c.CDNProvider, BaseURL: c.CDNBaseURL, TTL: c.CDNTokenTTL,
		Key: []byte(c.CDNSecurityKey), PreviousKey: []byte(c.CDNSecurityKeyPrevious),
		KeyPairID: c.CloudFrontKeyPairID, SHA256: c.CloudFrontHash == "sha256"}
	if c.CDNProvider == "cloudfront" {
		pem, err := envcfg.Secret("CLOUDFRONT_PRIVATE_KEY", c.CloudFrontPrivateKey)
		if err != nil {
			return token.Config{}, err
		}
		tc.PrivateKeyPEM = pem
	}
	if s3 != nil {
		tc.S3, tc.Bucket = s3.Client(), s3.Bucket()
	}
	return tc, nil
}

// provider is the name of the scheme in use.
func (c *Config) provider() string {
	if !c.CDNEnabled {
		return "origin"
	}
	return c.CDNProvider
}

func (c *Config) trustedProxies() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range c.TrustedProxies {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("TRUSTED_PROXIES: %q is not a CIDR or an address", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func absoluteURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
		return fmt.Errorf("%q is not an absolute http(s) URL without query", raw)
	}
	return nil
}
