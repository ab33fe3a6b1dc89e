package catalog

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
)

// ShareTokenLen is the length of an encoded share token: 128 random bits
// in unpadded base64url.
const ShareTokenLen = 22

// NewShareToken returns a fresh share token and the hash to store. The
// token is shown to its creator once and never stored.
func NewShareToken() (token string, hash []byte) {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	token = base64.RawURLEncoding.EncodeToString(b[:])
	return token, HashShareToken(token)
}

// HashShareToken is how a share token is looked up. A fast hash is
// enough: the token has 128 bits of entropy, so there is nothing to
// brute-force that a slow hash would protect.
func HashShareToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// ValidShareTokenSyntax rejects strings that cannot be share tokens before
// any lookup.
func ValidShareTokenSyntax(token string) bool {
	if len(token) != ShareTokenLen {
		return false
	}
	_, err := base64.RawURLEncoding.Strict().DecodeString(token)
	return err == nil
}
