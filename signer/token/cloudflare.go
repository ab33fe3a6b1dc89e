package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Cloudflare signs for a WAF rule using is_timed_hmac_valid_v0
// (Cloudflare's "HMAC validation"): the URL ends in
// ?verify=<issued>-<urlencoded std base64 HMAC-SHA256(key, path + issued)>,
// and the rule itself holds the lifetime (deploy/CLOUDFLARE.md).
type Cloudflare struct {
	base string
	ttl  time.Duration // the rule's lifetime: issued = expires - ttl
	keys [][]byte
}

// NewCloudflare builds the signer. ttl must equal the lifetime in the WAF
// rule.
func NewCloudflare(baseURL string, ttl time.Duration, key []byte, previous ...[]byte) (*Cloudflare, error) {
	base, err := cleanBaseURL(baseURL)
	if err != nil {
		return nil, err
	}
	if ttl < time.Minute {
		return nil, errors.New("token: the cloudflare rule's lifetime must be at least a minute")
	}
	c := &Cloudflare{base: base, ttl: ttl}
	for i, k := range append([][]byte{key}, previous...) {
		if i > 0 && len(k) == 0 {
			continue
		}
		if len(k) < MinKeyLen {
			return nil, fmt.Errorf("token: key must be at least %d bytes", MinKeyLen)
		}
		c.keys = append(c.keys, k)
	}
	return c, nil
}

// CloudflareMAC is the rule's message authentication code of message at
// issued, in standard base64 (what the verify parameter carries, before
// URL encoding).
func CloudflareMAC(key []byte, message string, issued int64) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(message))
	m.Write(strconv.AppendInt(nil, issued, 10))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// AppendURL implements Signer. The rule checks a single path: directory
// tokens and IP binding are not expressible (HLS goes through playlists
// the signer rewrites).
func (c *Cloudflare) AppendURL(dst []byte, r *Request) ([]byte, error) {
	if len(r.Path) == 0 || r.Path[0] != '/' || r.TokenPath != "" || r.PathForm || r.IP.IsValid() {
		return dst, ErrRequest
	}
	issued := r.Expires - int64(c.ttl/time.Second)
	dst = append(dst, c.base...)
	dst = append(dst, r.Path...)
	sep := byte('?')
	if r.Download != "" {
		dst = append(dst, "?download="...)
		dst = appendEscaped(dst, r.Download)
		sep = '&'
	}
	// verify is the last parameter, as the rule expects.
	dst = append(dst, sep)
	dst = append(dst, "verify="...)
	dst = strconv.AppendInt(dst, issued, 10)
	dst = append(dst, '-')
	return append(dst, url.QueryEscape(CloudflareMAC(c.keys[0], r.Path, issued))...), nil
}

// Verify implements Verifier the way the WAF rule evaluates.
func (c *Cloudflare) Verify(requestURI string, _ netip.Addr, now time.Time) (string, error) {
	path, query, _ := strings.Cut(requestURI, "?")
	i := strings.LastIndex(query, "verify=")
	if i < 0 || (i > 0 && query[i-1] != '&') {
		return "", ErrMissing
	}
	v, err := url.QueryUnescape(query[i+len("verify="):])
	if err != nil {
		return "", ErrMalformed
	}
	ts, mac, ok := strings.Cut(v, "-")
	issued, err := strconv.ParseInt(ts, 10, 64)
	if !ok || err != nil {
		return "", ErrMalformed
	}
	if now.Unix() > issued+int64(c.ttl/time.Second) {
		return "", ErrExpired
	}
	for _, k := range c.keys {
		if subtle.ConstantTimeCompare([]byte(CloudflareMAC(k, path, issued)), []byte(mac)) == 1 {
			return path, nil
		}
	}
	return "", ErrSignature
}
