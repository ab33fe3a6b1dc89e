package token

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/cloudfront/sign"
)

// CloudFront signs CloudFront URLs: a canned policy for one object, a
// custom policy with a wildcard resource ("https://host/hls/{track}/{pkg}/*")
// for an HLS package directory or an IP-bound URL. RSA-SHA1 goes through
// aws-sdk-go-v2's feature/cloudfront/sign; RSA-SHA256 (CloudFront's newer
// option, marked with Hash-Algorithm=SHA256) signs the same policy bytes.
type CloudFront struct {
	base      string
	keyPairID string
	key       *rsa.PrivateKey
	hash      crypto.Hash
	urls      *sign.URLSigner
}

// NewCloudFront builds the signer from a PEM RSA private key (PKCS#1 or
// PKCS#8) and the key pair (or public key) id.
func NewCloudFront(baseURL, keyPairID string, privateKeyPEM []byte, hash crypto.Hash) (*CloudFront, error) {
	base, err := cleanBaseURL(baseURL)
	if err != nil {
		return nil, err
	}
	if keyPairID == "" {
		return nil, errors.New("token: CloudFront needs CLOUDFRONT_KEY_PAIR_ID")
	}
	if hash != crypto.SHA1 && hash != crypto.SHA256 {
		return nil, errors.New("token: CloudFront signs with SHA1 or SHA256")
	}
	key, err := sign.LoadPEMPrivKey(bytes.NewReader(privateKeyPEM))
	if err != nil {
		k8, err8 := sign.LoadPEMPrivKeyPKCS8(bytes.NewReader(privateKeyPEM))
		rk, ok := k8.(*rsa.PrivateKey)
		if err8 != nil || !ok {
			return nil, fmt.Errorf("token: CLOUDFRONT_PRIVATE_KEY is not a PEM RSA private key: %w", err)
		}
		key = rk
	}
	return &CloudFront{base: base, keyPairID: keyPairID, key: key, hash: hash, urls: sign.NewURLSigner(keyPairID, key)}, nil
}

// AppendURL implements Signer.
func (c *CloudFront) AppendURL(dst []byte, r *Request) ([]byte, error) {
	if len(r.Path) == 0 || r.Path[0] != '/' || r.PathForm {
		return dst, ErrRequest
	}
	u := c.base + r.Path
	if r.Download != "" {
		u += "?download=" + url.QueryEscape(r.Download)
	}
	expires := time.Unix(r.Expires, 0)
	var policy *sign.Policy
	if r.TokenPath != "" || r.IP.IsValid() {
		resource := u
		if r.TokenPath != "" {
			if !withinTokenPath(r.Path, r.TokenPath) {
				return dst, ErrScope
			}
			resource = c.base + strings.TrimSuffix(r.TokenPath, "/") + "/*"
		}
		policy = &sign.Policy{Statements: []sign.Statement{{
			Resource:  resource,
			Condition: sign.Condition{DateLessThan: &sign.AWSEpochTime{Time: expires}},
		}}}
		if r.IP.IsValid() {
			bits := 32
			if !r.IP.Unmap().Is4() {
				bits = 64
			}
			policy.Statements[0].Condition.IPAddress = &sign.IPAddress{SourceIP: netip.PrefixFrom(r.IP.Unmap(), bits).Masked().String()}
		}
	}
	if c.hash == crypto.SHA1 {
		var signed string
		var err error
		if policy == nil {
			signed, err = c.urls.Sign(u, expires)
		} else {
			signed, err = c.urls.SignWithPolicy(u, policy)
		}
		if err != nil {
			return dst, fmt.Errorf("%w: %w", ErrRequest, err)
		}
		return append(dst, signed...), nil
	}
	if policy == nil {
		policy = sign.NewCannedPolicy(u, expires)
	}
	sig, b64Policy, err := c.signSHA256(policy)
	if err != nil {
		return dst, err
	}
	dst = append(dst, u...)
	if strings.Contains(u, "?") {
		dst = append(dst, '&')
	} else {
		dst = append(dst, '?')
	}
	if r.TokenPath != "" || r.IP.IsValid() {
		dst = append(dst, "Policy="...)
		dst = append(dst, b64Policy...)
	} else {
		dst = append(dst, "Expires="...)
		dst = strconv.AppendInt(dst, r.Expires, 10)
	}
	dst = append(dst, "&Signature="...)
	dst = append(dst, sig...)
	dst = append(dst, "&Key-Pair-Id="...)
	dst = append(dst, c.keyPairID...)
	return append(dst, "&Hash-Algorithm=SHA256"...), nil
}

// signSHA256 encodes the policy exactly as the SDK does (JSON without
// HTML escaping, trimmed) and signs it with RSA-SHA256.
func (c *CloudFront) signSHA256(p *sign.Policy) (sig, b64Policy []byte, err error) {
	policy, err := CloudFrontPolicyJSON(p)
	if err != nil {
		return nil, nil, err
	}
	h := sha256.Sum256(policy)
	raw, err := rsa.SignPKCS1v15(rand.Reader, c.key, crypto.SHA256, h[:])
	if err != nil {
		return nil, nil, fmt.Errorf("token: cannot sign the policy: %w", err)
	}
	return []byte(CloudFrontBase64(raw)), []byte(CloudFrontBase64(policy)), nil
}

// CloudFrontPolicyJSON is the policy document as the SDK serialises it.
func CloudFrontPolicyJSON(p *sign.Policy) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(p); err != nil {
		return nil, err
	}
	return bytes.TrimSpace(b.Bytes()), nil
}

// CloudFrontBase64 is base64 with CloudFront's URL-safe substitutions:
// + → -, = → _, / → ~.
func CloudFrontBase64(b []byte) string {
	return strings.NewReplacer("+", "-", "=", "_", "/", "~").Replace(base64.StdEncoding.EncodeToString(b))
}
