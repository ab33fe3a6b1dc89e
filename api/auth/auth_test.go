package auth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/playgate/playgate/api/auth"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

func publicPEM(t *testing.T, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func sign(t *testing.T, m jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, claims).SignedString(key)
	require.NoError(t, err)
	return s
}

func TestVerify(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	rsaPEM := publicPEM(t, &rsaKey.PublicKey)
	ecPEM := publicPEM(t, &ecKey.PublicKey)

	now := time.Now()
	valid := func() jwt.MapClaims {
		return jwt.MapClaims{"sub": "alice", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix()}
	}
	with := func(k string, v any) jwt.MapClaims {
		c := valid()
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}

	hs := auth.Config{Secret: secret}
	cases := []struct {
		name  string
		cfg   auth.Config
		token string
		ok    bool
	}{
		{"HS256 valid", hs, sign(t, jwt.SigningMethodHS256, secret, valid()), true},
		{"HS256 wrong secret", hs, sign(t, jwt.SigningMethodHS256, []byte("another secret of thirty-two by."), valid()), false},
		{"HS384 not pinned", hs, sign(t, jwt.SigningMethodHS384, secret, valid()), false},
		{"expired", hs, sign(t, jwt.SigningMethodHS256, secret, with("exp", now.Add(-time.Hour).Unix())), false},
		{"no exp", hs, sign(t, jwt.SigningMethodHS256, secret, with("exp", nil)), false},
		{"issued in the future", hs, sign(t, jwt.SigningMethodHS256, secret, with("iat", now.Add(time.Hour).Unix())), false},
		{"no subject", hs, sign(t, jwt.SigningMethodHS256, secret, with("sub", nil)), false},
		{"alg none", hs, sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, valid()), false},
		{"garbage", hs, "not.a.jwt", false},
		{"RS256 valid", auth.Config{PublicKeyPEM: rsaPEM}, sign(t, jwt.SigningMethodRS256, rsaKey, valid()), true},
		{"ES256 valid", auth.Config{PublicKeyPEM: ecPEM}, sign(t, jwt.SigningMethodES256, ecKey, valid()), true},
		// The classic confusion: HMAC "signed" with the public key's PEM.
		{"HS256 with the RSA public key as secret", auth.Config{PublicKeyPEM: rsaPEM}, sign(t, jwt.SigningMethodHS256, rsaPEM, valid()), false},
		{"HS256 on a verifier with both, public key as secret", auth.Config{Secret: secret, PublicKeyPEM: rsaPEM}, sign(t, jwt.SigningMethodHS256, rsaPEM, valid()), false},
		{"RS256 on a verifier with both", auth.Config{Secret: secret, PublicKeyPEM: rsaPEM}, sign(t, jwt.SigningMethodRS256, rsaKey, valid()), true},
		{"issuer matches", auth.Config{Secret: secret, Issuer: "idp"}, sign(t, jwt.SigningMethodHS256, secret, with("iss", "idp")), true},
		{"issuer differs", auth.Config{Secret: secret, Issuer: "idp"}, sign(t, jwt.SigningMethodHS256, secret, with("iss", "evil")), false},
		{"audience missing", auth.Config{Secret: secret, Audience: "playgate"}, sign(t, jwt.SigningMethodHS256, secret, valid()), false},
		{"audience matches", auth.Config{Secret: secret, Audience: "playgate"}, sign(t, jwt.SigningMethodHS256, secret, with("aud", "playgate")), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, err := auth.NewVerifier(c.cfg)
			require.NoError(t, err)
			claims, err := v.Verify(c.token)
			if c.ok {
				require.NoError(t, err)
				assert.Equal(t, "alice", claims.Subject)
			} else {
				assert.ErrorIs(t, err, auth.ErrInvalidToken)
			}
		})
	}
}

func TestNewVerifierRejectsBadConfig(t *testing.T) {
	for name, cfg := range map[string]auth.Config{
		"nothing":      {},
		"short secret": {Secret: []byte("short")},
		"bad PEM":      {PublicKeyPEM: []byte("-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")},
	} {
		_, err := auth.NewVerifier(cfg)
		assert.Error(t, err, name)
	}
}

func TestMintRoundTrip(t *testing.T) {
	tok, err := auth.Mint(secret, auth.MintOptions{Subject: "bob", TTL: time.Hour, Role: auth.RoleMarketplace})
	require.NoError(t, err)
	v, err := auth.NewVerifier(auth.Config{Secret: secret})
	require.NoError(t, err)
	c, err := v.Verify(tok)
	require.NoError(t, err)
	assert.Equal(t, "bob", c.Subject)
	assert.Equal(t, auth.RoleMarketplace, c.Role)
	assert.WithinDuration(t, time.Now().Add(time.Hour), c.ExpiresAt.Time, 5*time.Second)
}

func TestBearerToken(t *testing.T) {
	for _, c := range []struct {
		header, token string
		err           error
	}{
		{"Bearer abc", "abc", nil},
		{"bearer abc", "abc", nil},
		{"", "", auth.ErrNoToken},
		{"Basic YWxhZGRpbjpvcGVuc2VzYW1l", "", auth.ErrInvalidToken},
		{"Bearer ", "", auth.ErrInvalidToken},
		{"Bearer", "", auth.ErrInvalidToken},
	} {
		tok, err := auth.BearerToken(c.header)
		assert.Equal(t, c.token, tok, c.header)
		if c.err != nil {
			assert.ErrorIs(t, err, c.err, c.header)
		} else {
			assert.NoError(t, err, c.header)
		}
	}
}

func FuzzVerify(f *testing.F) {
	good, _ := auth.Mint(secret, auth.MintOptions{Subject: "alice", TTL: time.Hour})
	f.Add("Bearer " + good)
	f.Add("Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.")
	f.Add("bearer ...")
	v, err := auth.NewVerifier(auth.Config{Secret: secret})
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, header string) {
		tok, err := auth.BearerToken(header)
		if err != nil {
			return
		}
		c, err := v.Verify(tok)
		if err == nil {
			// Only a token signed with our secret verifies.
			assert.NotEmpty(t, c.Subject)
			assert.Equal(t, "alice", c.Subject)
		}
	})
}
