package token

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// BunnyScheme is one of Bunny.net's token authentication schemes.
type BunnyScheme int

const (
	// BunnyHMAC is token authentication V2 with HMAC-SHA256 (SDK 2.x):
	// token = "HS256-" ["1-"] b64url(HMAC(key, path + expires + ip bytes + params)).
	BunnyHMAC BunnyScheme = iota
	// BunnySHA256 is the older V2 scheme with a plain hash:
	// token = b64url(SHA256(key + path + expires + ip text + params)).
	BunnySHA256
	// BunnyMD5 is V1 "basic" authentication, query form only:
	// token = b64url(MD5(key + path + expires [+ ip])). Deprecated by Bunny.
	BunnyMD5
)

// MinKeyLen is the shortest key accepted: Bunny's keys are UUIDs, and a
// short key is a typo or a placeholder.
const MinKeyLen = 16

const pathFormPrefix = "/bcdn_token="

// Bunny signs and verifies Bunny.net token-authenticated URLs, exactly as
// Bunny's own SDK computes them (see ../shared/vectors/bunny.json).
type Bunny struct {
	scheme BunnyScheme
	base   string // scheme://host[/prefix], no trailing slash
	keys   []*bunnyKey
}

// bunnyKey holds what is constant per key. HMAC states are pooled: a
// keyed HMAC precomputes its inner and outer pads once, and Reset returns
// it to that state, so signing costs neither the key schedule nor an
// allocation.
type bunnyKey struct {
	raw  []byte
	pool sync.Pool // of *bunnyScratch
}

type bunnyScratch struct {
	h     hash.Hash
	data  []byte // signing data
	input []byte // what is hashed
	sum   []byte
}

// NewBunny builds a Bunny signer/verifier. baseURL is the pull zone's
// URL (https://zone.b-cdn.net) or any origin URL; key signs, and keys in
// previous are also accepted when verifying (rotation).
func NewBunny(scheme BunnyScheme, baseURL string, key []byte, previous ...[]byte) (*Bunny, error) {
	if scheme < BunnyHMAC || scheme > BunnyMD5 {
		return nil, fmt.Errorf("token: unknown bunny scheme %d", scheme)
	}
	base, err := cleanBaseURL(baseURL)
	if err != nil {
		return nil, err
	}
	b := &Bunny{scheme: scheme, base: base}
	for i, k := range append([][]byte{key}, previous...) {
		if i > 0 && len(k) == 0 {
			continue // an unset previous key
		}
		if len(k) < MinKeyLen {
			return nil, fmt.Errorf("token: key must be at least %d bytes", MinKeyLen)
		}
		b.keys = append(b.keys, newBunnyKey(scheme, k))
	}
	return b, nil
}

func newBunnyKey(scheme BunnyScheme, raw []byte) *bunnyKey {
	k := &bunnyKey{raw: slices.Clone(raw)}
	k.pool.New = func() any {
		s := &bunnyScratch{data: make([]byte, 0, 256), input: make([]byte, 0, 512), sum: make([]byte, 0, sha256.Size)}
		switch scheme {
		case BunnyHMAC:
			s.h = hmac.New(sha256.New, k.raw)
		case BunnySHA256:
			s.h = sha256.New()
		case BunnyMD5:
			s.h = md5.New()
		}
		return s
	}
	return k
}

func cleanBaseURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("token: base URL %q must be an absolute http(s) URL without query", raw)
	}
	return strings.TrimRight(raw, "/"), nil
}

// AppendURL implements Signer.
func (b *Bunny) AppendURL(dst []byte, r *Request) ([]byte, error) {
	if len(r.Path) == 0 || r.Path[0] != '/' {
		return dst, ErrRequest
	}
	if r.TokenPath != "" && !withinTokenPath(r.Path, r.TokenPath) {
		return dst, ErrScope
	}
	if b.scheme == BunnyMD5 && (r.PathForm || r.TokenPath != "" || r.Countries != "" || r.CountriesBlocked != "" ||
		r.Limit != 0 || r.IgnoreParams || r.Download != "") {
		return dst, ErrRequest // V1 has none of these
	}
	k := b.keys[0]
	s := k.pool.Get().(*bunnyScratch)
	defer k.pool.Put(s)

	dst = append(dst, b.base...)
	if r.PathForm {
		dst = append(dst, pathFormPrefix...)
	} else {
		dst = append(dst, r.Path...)
		dst = append(dst, "?token="...)
	}
	s.data = appendSigningData(s.data[:0], r)
	dst = b.appendToken(dst, k, s, r, s.data)
	dst = appendParams(dst, r)
	dst = append(dst, "&expires="...)
	dst = strconv.AppendInt(dst, r.Expires, 10)
	if r.PathForm {
		dst = append(dst, r.Path...)
	}
	return dst, nil
}

// appendToken computes the token for r with key k over signingData (the
// sorted signed parameters; V1 ignores them).
func (b *Bunny) appendToken(dst []byte, k *bunnyKey, s *bunnyScratch, r *Request, signingData []byte) []byte {
	sigPath := r.Path
	if r.TokenPath != "" {
		sigPath = r.TokenPath
	}
	in := s.input[:0]
	if b.scheme != BunnyHMAC {
		in = append(in, k.raw...)
	}
	if b.scheme == BunnyMD5 {
		in = append(in, r.Path...)
	} else {
		in = append(in, sigPath...)
	}
	in = strconv.AppendInt(in, r.Expires, 10)
	if r.IP.IsValid() {
		if b.scheme == BunnyHMAC {
			in = appendIPBytes(in, r.IP)
		} else {
			in = r.IP.AppendTo(in)
		}
	}
	if b.scheme != BunnyMD5 {
		in = append(in, signingData...)
	}
	s.input = in
	s.h.Reset()
	s.h.Write(in)
	s.sum = s.h.Sum(s.sum[:0])

	if b.scheme == BunnyHMAC {
		dst = append(dst, "HS256-"...)
		if r.IP.IsValid() {
			dst = append(dst, "1-"...)
		}
	}
	return base64.RawURLEncoding.AppendEncode(dst, s.sum)
}

// appendIPBytes appends the raw address: 4 bytes for IPv4; for IPv6 the
// /64 network (8 bytes) and 8 zero bytes, so a client keeps its URL when
// its interface identifier changes.
func appendIPBytes(dst []byte, ip netip.Addr) []byte {
	ip = ip.Unmap()
	if ip.Is4() {
		a := ip.As4()
		return append(dst, a[:]...)
	}
	a := ip.As16()
	dst = append(dst, a[:8]...)
	return append(dst, 0, 0, 0, 0, 0, 0, 0, 0)
}

// The signed parameters in bytewise key order, which is also the order in
// which they appear in the URL: download, limit, token_countries,
// token_countries_blocked, token_ignore_params, token_path.
func appendSigningData(dst []byte, r *Request) []byte {
	first := true
	add := func(k, v string) {
		if !first {
			dst = append(dst, '&')
		}
		first = false
		dst = append(dst, k...)
		dst = append(dst, '=')
		dst = append(dst, v...)
	}
	if r.Download != "" {
		add("download", r.Download)
	}
	if r.Limit != 0 {
		if !first {
			dst = append(dst, '&')
		}
		first = false
		dst = append(dst, "limit="...)
		dst = strconv.AppendInt(dst, r.Limit, 10)
	}
	if r.Countries != "" {
		add("token_countries", r.Countries)
	}
	if r.CountriesBlocked != "" {
		add("token_countries_blocked", r.CountriesBlocked)
	}
	if r.IgnoreParams {
		add("token_ignore_params", "true")
	}
	if r.TokenPath != "" {
		add("token_path", r.TokenPath)
	}
	return dst
}

// appendParams appends "&k=v" for each signed parameter, values
// percent-encoded.
func appendParams(dst []byte, r *Request) []byte {
	if r.Download != "" {
		dst = append(dst, "&download="...)
		dst = appendEscaped(dst, r.Download)
	}
	if r.Limit != 0 {
		dst = append(dst, "&limit="...)
		dst = strconv.AppendInt(dst, r.Limit, 10)
	}
	if r.Countries != "" {
		dst = append(dst, "&token_countries="...)
		dst = appendEscaped(dst, r.Countries)
	}
	if r.CountriesBlocked != "" {
		dst = append(dst, "&token_countries_blocked="...)
		dst = appendEscaped(dst, r.CountriesBlocked)
	}
	if r.IgnoreParams {
		dst = append(dst, "&token_ignore_params=true"...)
	}
	if r.TokenPath != "" {
		dst = append(dst, "&token_path="...)
		dst = appendEscaped(dst, r.TokenPath)
	}
	return dst
}

// appendEscaped percent-encodes everything but RFC 3986's unreserved
// characters, as Bunny's SDKs do ("/" → %2F, "," → %2C).
func appendEscaped(dst []byte, s string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			dst = append(dst, c)
		} else {
			dst = append(dst, '%', hex[c>>4], hex[c&15])
		}
	}
	return dst
}

// Verify implements Verifier, in both URL forms.
func (b *Bunny) Verify(requestURI string, client netip.Addr, now time.Time) (string, error) {
	p, err := parseBunnyURL(requestURI)
	if err != nil {
		return "", err
	}
	if b.scheme == BunnyMD5 && p.pathForm {
		return "", ErrMissing
	}
	if now.Unix() > p.req.Expires {
		return "", ErrExpired
	}
	if p.req.TokenPath != "" && !withinTokenPath(p.req.Path, p.req.TokenPath) {
		return "", ErrScope
	}
	// Which client addresses to try: V2 HMAC marks IP-bound tokens; the
	// plain-hash schemes do not, so both are tried.
	ips := []netip.Addr{{}}
	switch {
	case b.scheme == BunnyHMAC:
		bound, ok := hmacTokenBound(p.token)
		if !ok {
			return "", ErrMalformed
		}
		if bound {
			if !client.IsValid() {
				return "", ErrSignature
			}
			ips = []netip.Addr{client}
		}
	case client.IsValid():
		ips = append(ips, client)
	}
	for _, k := range b.keys {
		for _, ip := range ips {
			r := p.req
			r.IP = ip
			if b.tokenMatches(k, &r, p.signingData, p.token) {
				return p.req.Path, nil
			}
		}
	}
	return "", ErrSignature
}

func (b *Bunny) tokenMatches(k *bunnyKey, r *Request, signingData, got string) bool {
	s := k.pool.Get().(*bunnyScratch)
	defer k.pool.Put(s)
	want := b.appendToken(make([]byte, 0, 64), k, s, r, []byte(signingData))
	return subtle.ConstantTimeCompare(want, []byte(got)) == 1
}

// hmacTokenLen is the length of an HMAC-SHA256 in unpadded base64.
const hmacTokenLen = 43

// hmacTokenBound reads a V2 HMAC token's shape. "HS256-1-" marks an
// IP-bound token, but a base64 digest may itself begin with "1-" (one in
// 4096), so the length decides: the digest is always 43 characters.
func hmacTokenBound(tok string) (bound, ok bool) {
	rest, ok := strings.CutPrefix(tok, "HS256-")
	switch {
	case !ok:
		return false, false
	case len(rest) == hmacTokenLen:
		return false, true
	case len(rest) == hmacTokenLen+2 && strings.HasPrefix(rest, "1-"):
		return true, true
	}
	return false, false
}

type parsedBunny struct {
	req         Request
	token       string
	signingData string // sorted "k=v&…" of every signed parameter
	pathForm    bool
}

// parseBunnyURL splits a request URI into the object path, the token, the
// expiry and the signed parameters, in either form:
//
//	/path/file?token=T&k=v&expires=E
//	/bcdn_token=T&k=v&expires=E/path/file
func parseBunnyURL(uri string) (parsedBunny, error) {
	var p parsedBunny
	path, query, _ := strings.Cut(uri, "?")
	var carrier string
	if rest, ok := strings.CutPrefix(path, pathFormPrefix); ok {
		i := strings.IndexByte(rest, '/')
		if i < 0 {
			return p, ErrMalformed
		}
		p.pathForm = true
		carrier = "token=" + rest[:i]
		path = rest[i:]
		if query != "" {
			carrier += "&" + query
		}
	} else {
		carrier = query
	}
	if path == "" || path[0] != '/' {
		return p, ErrMalformed
	}
	p.req.Path = path

	var params []string
	ignore := false
	haveExpires := false
	for kv := range strings.SplitSeq(carrier, "&") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		val, err := url.QueryUnescape(v)
		if err != nil {
			return p, ErrMalformed
		}
		switch k {
		case "token":
			if p.token != "" {
				return p, ErrMalformed
			}
			p.token = val
			continue
		case "expires":
			e, err := strconv.ParseInt(val, 10, 64)
			if err != nil || haveExpires {
				return p, ErrMalformed
			}
			p.req.Expires, haveExpires = e, true
			continue
		case "token_path":
			p.req.TokenPath = val
		case "token_ignore_params":
			ignore = val == "true"
		}
		params = append(params, k+"="+val)
	}
	if p.token == "" {
		return p, ErrMissing
	}
	if !haveExpires {
		return p, ErrMalformed
	}
	if ignore {
		params = slices.DeleteFunc(params, func(kv string) bool {
			k, _, _ := strings.Cut(kv, "=")
			return !isBunnyParam(k)
		})
	}
	slices.Sort(params)
	p.signingData = strings.Join(params, "&")
	return p, nil
}

func isBunnyParam(k string) bool {
	switch k {
	case "limit", "token_countries", "token_countries_blocked", "token_ignore_params", "token_path":
		return true
	}
	return false
}

// ParseBunnyScheme maps a CDN_PROVIDER name to its scheme.
func ParseBunnyScheme(provider string) (BunnyScheme, error) {
	switch provider {
	case "bunny":
		return BunnyHMAC, nil
	case "bunny-sha256":
		return BunnySHA256, nil
	case "bunny-md5":
		return BunnyMD5, nil
	}
	return 0, errors.New("token: not a bunny provider: " + provider)
}
