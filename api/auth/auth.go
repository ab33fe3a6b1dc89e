// Package auth verifies the bearer JWTs that identify playgate's users
// and mints development tokens. The catalog API owns the concept; the
// signer imports it to recognise owners of private tracks.
//
// Algorithms are pinned by configuration (HS256 with a shared secret,
// RS256 or ES256 with a public key) and each algorithm gets only its own
// key, which defeats algorithm-confusion attacks (a public key replayed as
// an HMAC secret, or "none").
package auth

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// RoleMarketplace marks service tokens that may grant and revoke licences.
const RoleMarketplace = "marketplace"

// MinSecretLen is the shortest accepted HS256 secret: RFC 7518 §3.2 asks
// for a key at least as long as the hash output.
const MinSecretLen = 32

var (
	// ErrNoToken means the request carried no bearer token.
	ErrNoToken = errors.New("auth: no bearer token")
	// ErrInvalidToken covers every token that does not verify.
	ErrInvalidToken = errors.New("auth: invalid token")
)

// Config says which tokens to accept.
type Config struct {
	// Secret verifies HS256 tokens (and signs development tokens).
	Secret []byte
	// PublicKeyPEM verifies RS256 (RSA key) or ES256 (P-256 key) tokens.
	PublicKeyPEM []byte
	// Issuer and Audience, when set, must match the token's iss and aud.
	Issuer   string
	Audience string
}

// Claims is what playgate reads from a token.
type Claims struct {
	jwt.RegisteredClaims
	// Role is set on service tokens, e.g. RoleMarketplace.
	Role string `json:"role,omitempty"`
}

// Verifier checks tokens. It is safe for concurrent use.
type Verifier struct {
	parser *jwt.Parser
	secret []byte
	rsa    *rsa.PublicKey
	ec     *ecdsa.PublicKey
}

// NewVerifier validates cfg and builds a verifier.
func NewVerifier(cfg Config) (*Verifier, error) {
	v := &Verifier{}
	var methods []string
	if len(cfg.Secret) > 0 {
		if len(cfg.Secret) < MinSecretLen {
			return nil, fmt.Errorf("AUTH_JWT_SECRET must be at least %d bytes", MinSecretLen)
		}
		v.secret = cfg.Secret
		methods = append(methods, jwt.SigningMethodHS256.Alg())
	}
	if len(cfg.PublicKeyPEM) > 0 {
		if k, err := jwt.ParseRSAPublicKeyFromPEM(cfg.PublicKeyPEM); err == nil {
			v.rsa = k
			methods = append(methods, jwt.SigningMethodRS256.Alg())
		} else if k, err := jwt.ParseECPublicKeyFromPEM(cfg.PublicKeyPEM); err == nil {
			if k.Curve.Params().BitSize != 256 {
				return nil, errors.New("AUTH_JWT_PUBLIC_KEY: ES256 needs a P-256 key")
			}
			v.ec = k
			methods = append(methods, jwt.SigningMethodES256.Alg())
		} else {
			return nil, errors.New("AUTH_JWT_PUBLIC_KEY is not a PEM RSA or EC public key")
		}
	}
	if len(methods) == 0 {
		return nil, errors.New("AUTH_JWT_SECRET or AUTH_JWT_PUBLIC_KEY is required")
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(methods),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(30 * time.Second),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

// key hands each algorithm its own key and nothing else.
func (v *Verifier) key(t *jwt.Token) (any, error) {
	switch t.Method.(type) {
	case *jwt.SigningMethodHMAC:
		if v.secret != nil {
			return v.secret, nil
		}
	case *jwt.SigningMethodRSA:
		if v.rsa != nil {
			return v.rsa, nil
		}
	case *jwt.SigningMethodECDSA:
		if v.ec != nil {
			return v.ec, nil
		}
	}
	return nil, fmt.Errorf("no key for %s", t.Method.Alg())
}

// Verify checks a compact JWT and returns its claims. Every failure
// wraps ErrInvalidToken.
func (v *Verifier) Verify(token string) (*Claims, error) {
	var c Claims
	if _, err := v.parser.ParseWithClaims(token, &c, v.key); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if c.Subject == "" {
		return nil, fmt.Errorf("%w: no subject", ErrInvalidToken)
	}
	return &c, nil
}

// BearerToken extracts the token from an Authorization header value
// (RFC 6750 §2.1; the scheme is case-insensitive).
func BearerToken(header string) (string, error) {
	if header == "" {
		return "", ErrNoToken
	}
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return "", fmt.Errorf("%w: Authorization is not a Bearer token", ErrInvalidToken)
	}
	return strings.TrimSpace(token), nil
}

// MintOptions describes a token to mint.
type MintOptions struct {
	Subject  string
	TTL      time.Duration
	Role     string
	Issuer   string
	Audience string
	Now      time.Time // zero: time.Now()
}

// Mint signs an HS256 token with secret, for development and tests.
func Mint(secret []byte, o MintOptions) (string, error) {
	if len(secret) < MinSecretLen {
		return "", fmt.Errorf("AUTH_JWT_SECRET must be at least %d bytes", MinSecretLen)
	}
	if o.Subject == "" {
		return "", errors.New("auth: a token needs a subject")
	}
	if o.TTL <= 0 {
		return "", errors.New("auth: a token needs a positive TTL")
	}
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	c := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   o.Subject,
			Issuer:    o.Issuer,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(o.TTL)),
		},
		Role: o.Role,
	}
	if o.Audience != "" {
		c.Audience = jwt.ClaimStrings{o.Audience}
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
}
