package token

import (
	"crypto"
	"encoding/json"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/cloudfront/sign"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/playgate/playgate/internal/sharedfiles"
)

type otherVectors struct {
	Cloudflare []struct {
		Key, Message string
		Timestamp    int64
		Verify       string `json:"verify_param_urlencoded_std_b64"`
	} `json:"cloudflare_waf_hmac"`
	CloudFront []struct {
		Name, Hash string
		PolicyJSON string  `json:"policy_json"`
		Signature  string  `json:"signature_cf_b64"`
		SignedURL  *string `json:"signed_url"`
		PolicyB64  string  `json:"policy_cf_b64"`
	} `json:"cloudfront"`
	R2 []struct {
		AccessKeyID string `json:"access_key_id"`
		Secret      string
		AccountID   string `json:"account_id"`
		Bucket, Key string
		SigningTime string `json:"signing_time"`
		Expires     int64
		Style       string
		URL         string
	} `json:"r2_sigv4"`
}

func loadOtherVectors(t *testing.T) otherVectors {
	b, err := os.ReadFile(sharedfiles.Path(t, "vectors/other_cdns.json"))
	require.NoError(t, err)
	var v otherVectors
	require.NoError(t, json.Unmarshal(b, &v))
	return v
}

func TestCloudflareVectors(t *testing.T) {
	v := loadOtherVectors(t)
	require.NotEmpty(t, v.Cloudflare)
	for _, c := range v.Cloudflare {
		mac := CloudflareMAC([]byte(c.Key), c.Message, c.Timestamp)
		assert.Equal(t, c.Verify, itoa64(c.Timestamp)+"-"+url.QueryEscape(mac), c.Message)
	}
}

func TestCloudflareSignVerify(t *testing.T) {
	key := []byte("cloudflare-waf-key-0123")
	c, err := NewCloudflare("https://media.example", time.Hour, key, []byte("the-previous-waf-key"))
	require.NoError(t, err)
	now := time.Unix(1_767_290_000, 0)
	u, err := c.AppendURL(nil, &Request{Path: "/tracks/a/b.mp3", Expires: now.Unix() + 3600})
	require.NoError(t, err)
	assert.Contains(t, string(u), "?verify="+itoa64(now.Unix())+"-", "issued = expires - the rule's lifetime, last parameter")
	uri := strings.TrimPrefix(string(u), "https://media.example")
	p, err := c.Verify(uri, netip.Addr{}, now.Add(59*time.Minute))
	require.NoError(t, err)
	assert.Equal(t, "/tracks/a/b.mp3", p)
	_, err = c.Verify(uri, netip.Addr{}, now.Add(61*time.Minute))
	assert.ErrorIs(t, err, ErrExpired)
	_, err = c.Verify(strings.Replace(uri, "b.mp3", "c.mp3", 1), netip.Addr{}, now)
	assert.ErrorIs(t, err, ErrSignature)
	_, err = c.AppendURL(nil, &Request{Path: "/hls/a/", TokenPath: "/hls/a/", Expires: 1})
	assert.ErrorIs(t, err, ErrRequest, "no directory tokens")
}

// policyFrom rebuilds the SDK's policy from a vector's JSON.
func policyFrom(t *testing.T, js string) *sign.Policy {
	var raw struct {
		Statement []struct {
			Resource  string
			Condition struct {
				IPAddress *struct {
					SourceIP string `json:"AWS:SourceIp"`
				} `json:"IpAddress"`
				DateLessThan struct {
					Epoch int64 `json:"AWS:EpochTime"`
				}
			}
		}
	}
	require.NoError(t, json.Unmarshal([]byte(js), &raw))
	p := &sign.Policy{}
	for _, s := range raw.Statement {
		st := sign.Statement{Resource: s.Resource, Condition: sign.Condition{DateLessThan: &sign.AWSEpochTime{Time: time.Unix(s.Condition.DateLessThan.Epoch, 0)}}}
		if s.Condition.IPAddress != nil {
			st.Condition.IPAddress = &sign.IPAddress{SourceIP: s.Condition.IPAddress.SourceIP}
		}
		p.Statements = append(p.Statements, st)
	}
	return p
}

func TestCloudFrontVectors(t *testing.T) {
	v := loadOtherVectors(t)
	pem, err := os.ReadFile(sharedfiles.Path(t, "vectors/cloudfront_test_key.pem"))
	require.NoError(t, err)
	require.NotEmpty(t, v.CloudFront)
	for _, c := range v.CloudFront {
		t.Run(c.Name, func(t *testing.T) {
			hash := crypto.SHA1
			if c.Hash == "SHA256" {
				hash = crypto.SHA256
			}
			cf, err := NewCloudFront("https://d111111abcdef8.cloudfront.net", "K2JCJMDEHXQW5F", pem, hash)
			require.NoError(t, err)
			p := policyFrom(t, c.PolicyJSON)
			js, err := CloudFrontPolicyJSON(p)
			require.NoError(t, err)
			assert.Equal(t, c.PolicyJSON, string(js), "the policy document, byte for byte")
			var sig, b64 []byte
			if hash == crypto.SHA1 {
				sig, b64, err = p.Sign(cf.key) // the SDK's own signing
			} else {
				sig, b64, err = cf.signSHA256(p)
			}
			require.NoError(t, err)
			assert.Equal(t, c.Signature, string(sig))
			assert.Equal(t, c.PolicyB64, string(b64))
		})
	}
	// The full URLs: through the SDK's URL signer, and through AppendURL.
	cf, err := NewCloudFront("https://d111111abcdef8.cloudfront.net", "K2JCJMDEHXQW5F", pem, crypto.SHA1)
	require.NoError(t, err)
	got, err := cf.AppendURL(nil, &Request{Path: "/hls/track-42/index.m3u8", Expires: 1767290400})
	require.NoError(t, err)
	assert.Equal(t, *v.CloudFront[2].SignedURL, string(got))
	ruby, err := NewCloudFront("https://abc.cloudfront.net", "CF_KEYPAIR_ID", pem, crypto.SHA1)
	require.NoError(t, err)
	signed, err := ruby.urls.Sign("https://abc.cloudfront.net/images/image.jpg?color=red", time.Unix(1357034400, 0))
	require.NoError(t, err)
	assert.Equal(t, *v.CloudFront[0].SignedURL, signed)

	// A directory token is the custom wildcard policy of the vector.
	dir, err := cf.AppendURL(nil, &Request{Path: "/hls/track-42/128k/index.m3u8", TokenPath: "/hls/track-42/", Expires: 1767290400})
	require.NoError(t, err)
	assert.Contains(t, string(dir), "Policy="+v.CloudFront[3].PolicyB64)
	assert.Contains(t, string(dir), "Signature="+v.CloudFront[3].Signature)
}

func TestNewCloudFrontRejectsBadKeys(t *testing.T) {
	_, err := NewCloudFront("https://x.cloudfront.net", "K", []byte("not a pem"), crypto.SHA1)
	assert.ErrorContains(t, err, "CLOUDFRONT_PRIVATE_KEY")
	_, err = NewCloudFront("https://x.cloudfront.net", "", []byte("x"), crypto.SHA1)
	assert.ErrorContains(t, err, "CLOUDFRONT_KEY_PAIR_ID")
}

func TestR2PresignVectors(t *testing.T) {
	v := loadOtherVectors(t)
	require.NotEmpty(t, v.R2)
	for _, c := range v.R2 {
		t.Run(c.Style, func(t *testing.T) {
			client := s3.New(s3.Options{
				Region:       "auto",
				BaseEndpoint: aws.String("https://" + c.AccountID + ".r2.cloudflarestorage.com"),
				Credentials:  credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.Secret, ""),
				UsePathStyle: c.Style == "path",
			})
			at, err := time.Parse("20060102T150405Z", c.SigningTime)
			require.NoError(t, err)
			p := NewS3Presign(client, c.Bucket).WithSigningTime(at)
			got, err := p.AppendURL(nil, &Request{Path: "/" + c.Key, Expires: at.Unix() + c.Expires})
			require.NoError(t, err)
			assert.Equal(t, c.URL, string(got))
		})
	}
}

// Keys with spaces and non-ASCII are escaped once, as S3 expects.
func TestS3PresignEscapesKeysOnce(t *testing.T) {
	client := s3.New(s3.Options{Region: "auto", BaseEndpoint: aws.String("https://acct.r2.cloudflarestorage.com"),
		Credentials: credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""), UsePathStyle: true})
	at := time.Unix(1_767_225_600, 0)
	u, err := NewS3Presign(client, "music").WithSigningTime(at).AppendURL(nil, &Request{Path: "/audio/track 42 é.mp3", Expires: at.Unix() + 60})
	require.NoError(t, err)
	assert.Contains(t, string(u), "/music/audio/track%2042%20%C3%A9.mp3?")
	assert.NotContains(t, string(u), "%2520")
}

func itoa64(n int64) string { return strconv.FormatInt(n, 10) }
