package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/playgate/playgate/internal/sharedfiles"
)

func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := run(context.Background(), args, &out, &out)
	return out.String(), err
}

// The command line reproduces the shared vectors: operators and tests
// can check a URL from outside the code.
func TestSignCommandReproducesVectors(t *testing.T) {
	b, err := os.ReadFile(sharedfiles.Path(t, "vectors/bunny.json"))
	require.NoError(t, err)
	var f struct {
		Vectors []struct {
			Name, Provider, Key, Path, IP, Countries, Want string
			BaseURL                                        string `json:"base_url"`
			Expires                                        int64
			TokenPath                                      string `json:"token_path"`
			CountriesBlocked                               string `json:"countries_blocked"`
			PathForm                                       bool   `json:"path_form"`
			IgnoreParams                                   bool   `json:"ignore_params"`
			Limit                                          int64
		}
	}
	require.NoError(t, json.Unmarshal(b, &f))
	require.NotEmpty(t, f.Vectors)
	for _, v := range f.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			args := []string{"sign", "--provider", v.Provider, "--key", v.Key, "--base-url", v.BaseURL,
				"--path", v.Path, "--expires", itoa(v.Expires)}
			add := func(flag, val string) {
				if val != "" {
					args = append(args, flag, val)
				}
			}
			add("--token-path", v.TokenPath)
			add("--ip", v.IP)
			add("--countries", v.Countries)
			add("--countries-blocked", v.CountriesBlocked)
			if v.Limit != 0 {
				add("--limit", itoa(v.Limit))
			}
			if v.PathForm {
				args = append(args, "--path-form")
			}
			if v.IgnoreParams {
				args = append(args, "--ignore-params")
			}
			out, err := runCLI(t, args...)
			require.NoError(t, err)
			assert.Equal(t, v.Want+"\n", out, "prints the URL only")

			verifyArgs := []string{"verify", "--provider", v.Provider, "--key", v.Key, "--url", v.Want, "--now", itoa(v.Expires - 1)}
			if v.IP != "" {
				verifyArgs = append(verifyArgs, "--ip", v.IP)
			}
			out, err = runCLI(t, verifyArgs...)
			require.NoError(t, err)
			assert.Equal(t, "ok\n", out)
		})
	}
}

func TestVerifyCommandReportsTheReason(t *testing.T) {
	url := "https://token-tester.b-cdn.net/300kb.jpg?token=HS256-o10JRWlsAItyAsdKS6jJKjabHN4FrFsplDHPV1idcX4&expires=1598024587"
	out, err := runCLI(t, "verify", "--key", "SecurityKey", "--url", url, "--now", "1598024588")
	require.Error(t, err)
	assert.Equal(t, "token: expired\n", out)
	assert.Equal(t, 1, exitCode(err))
	out, err = runCLI(t, "verify", "--key", "WrongKey", "--url", url, "--now", "1598024000")
	require.Error(t, err)
	assert.Equal(t, "token: signature does not match\n", out)
	out, err = runCLI(t, "verify", "--key", "WrongKey", "--previous-key", "SecurityKey", "--url", url, "--now", "1598024000")
	require.NoError(t, err, "the previous key is accepted")
	assert.Equal(t, "ok\n", out)

	_, err = runCLI(t, "verify", "--url", url)
	assert.Equal(t, 2, exitCode(err), "a usage error")
}

// SPEC §4.5: never a silent fallback to unsigned URLs.
func TestServeFailsSafe(t *testing.T) {
	for _, c := range []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"CDN enabled without a key", map[string]string{"CDN_ENABLED": "true", "CDN_BASE_URL": "https://zone.b-cdn.net"},
			[]string{"CDN_SECURITY_KEY must be set"}},
		{"CDN enabled with a short key", map[string]string{"CDN_ENABLED": "true", "CDN_BASE_URL": "https://zone.b-cdn.net", "CDN_SECURITY_KEY": "short"},
			[]string{"CDN_SECURITY_KEY must be set"}},
		{"unknown provider and bad base URL", map[string]string{"CDN_ENABLED": "true", "CDN_PROVIDER": "akamai", "CDN_BASE_URL": "zone.b-cdn.net", "CDN_SECURITY_KEY": "0123456789abcdef0123"},
			[]string{`CDN_PROVIDER "akamai" is unknown`, "CDN_BASE_URL"}},
		{"no CDN and no origin key", map[string]string{"CDN_ENABLED": "false"},
			[]string{"ORIGIN_TOKEN_KEY must be set"}},
		{"bad proxies and TTL", map[string]string{"ORIGIN_TOKEN_KEY": "0123456789abcdef0123", "TRUSTED_PROXIES": "10.0.0.0/8,nope", "CDN_TOKEN_TTL": "10s"},
			[]string{"TRUSTED_PROXIES", "CDN_TOKEN_TTL must be at least 1m"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("DATABASE_URL", "postgres://127.0.0.1:1/x")
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			_, err := runCLI(t, "serve")
			require.Error(t, err)
			for _, w := range c.want {
				assert.Contains(t, err.Error(), w)
			}
			assert.True(t, strings.HasPrefix(err.Error(), "invalid configuration"), err.Error())
		})
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// `signer sign` reproduces the other providers' vectors from outside the
// code (../shared/vectors/other_cdns.json).
func TestSignCommandOtherProviders(t *testing.T) {
	pem := sharedfiles.Path(t, "vectors/cloudfront_test_key.pem")
	for name, c := range map[string]struct {
		args []string
		want string
	}{
		"cloudflare": {[]string{"--provider", "cloudflare", "--key", "mysecrettoken", "--issued", "1484063787",
			"--path", "/images/cat.jpg", "--base-url", "https://x.example"},
			"https://x.example/images/cat.jpg?verify=1484063787-XsZ5NmtNBxOd4f4fBOtqVmpWRnDRNkHKVZieqDPKu3U%3D"},
		"cloudfront canned": {[]string{"--provider", "cloudfront", "--key-pair-id", "K2JCJMDEHXQW5F", "--private-key", pem,
			"--expires", "1767290400", "--path", "/hls/track-42/index.m3u8", "--base-url", "https://d111111abcdef8.cloudfront.net"},
			"https://d111111abcdef8.cloudfront.net/hls/track-42/index.m3u8?Expires=1767290400&Signature=iRaxapAkSlRKvR1~xGpEa0UThipAbjB6efdyDDCq-0iBYtbze2ruhy-KOLAe6~IbnNgz81kWMkLUDKV2Z2EoHg4Rr~uOslIJq5LxxE0fQZuQlbfgkMZhodoOc8i7mkG3WKEckBRWAMLzH9s1RZJ06BscfGXVzhT4mjnWgeiQX5o_&Key-Pair-Id=K2JCJMDEHXQW5F"},
		"r2 path style": {[]string{"--provider", "s3presign", "--s3-endpoint", "https://023e105f4ecef8ad9ca31a8372d0c353.r2.cloudflarestorage.com",
			"--s3-bucket", "music", "--s3-region", "auto", "--s3-access-key-id", "0123456789abcdef0123456789abcdef",
			"--s3-secret-access-key", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "--s3-path-style",
			"--signing-time", "20260101T000000Z", "--expires-in", "900", "--path", "hls/track-42/index.m3u8"},
			"https://023e105f4ecef8ad9ca31a8372d0c353.r2.cloudflarestorage.com/music/hls/track-42/index.m3u8?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=0123456789abcdef0123456789abcdef%2F20260101%2Fauto%2Fs3%2Faws4_request&X-Amz-Date=20260101T000000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&x-id=GetObject&X-Amz-Signature=6f6d661ff09c6f43fd25c2cf88b37d9c4e7efeae77bc0220b3aa981e7b239464"},
	} {
		t.Run(name, func(t *testing.T) {
			out, err := runCLI(t, append([]string{"sign"}, c.args...)...)
			require.NoError(t, err)
			assert.Equal(t, c.want+"\n", out)
		})
	}
	_, err := runCLI(t, "sign", "--provider", "s3presign", "--s3-endpoint", "acct.r2.cloudflarestorage.com", "--s3-bucket", "b",
		"--s3-access-key-id", "a", "--s3-secret-access-key", "s", "--path", "k")
	assert.ErrorContains(t, err, "needs a scheme", "an R2 endpoint without scheme is a clear error")
	_, err = runCLI(t, "sign", "--provider", "cloudfront", "--key-pair-id", "K", "--private-key", "/dev/null",
		"--expires", "1", "--path", "/a", "--base-url", "https://x")
	assert.ErrorContains(t, err, "CLOUDFRONT_PRIVATE_KEY", "a malformed PEM is a clear error")
}
