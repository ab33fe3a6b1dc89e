package main

import (
	"crypto"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/playgate/playgate/signer/token"
)

// errUsage marks command-line mistakes (exit 2, like flag's own).
var errUsage = errors.New("usage")

// errReported marks a failure already printed (signer verify's reason).
var errReported = errors.New("reported")

func exitCode(err error) int {
	if errors.Is(err, errUsage) {
		return 2
	}
	return 1
}

func usageError(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errUsage}, args...)...)
}

// signCmd prints one signed URL and nothing else.
func signCmd(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("signer sign", flag.ContinueOnError)
	provider := fs.String("provider", "bunny", "URL scheme: bunny, bunny-sha256, bunny-md5 or origin")
	key := fs.String("key", "", "security key")
	base := fs.String("base-url", "", "base URL, e.g. https://zone.b-cdn.net")
	path := fs.String("path", "", "URL path of the object, starting with /")
	expires := fs.Int64("expires", 0, "expiry, Unix seconds (default: now + 1h)")
	tokenPath := fs.String("token-path", "", "directory the token opens (token_path)")
	ip := fs.String("ip", "", "client IP to bind the URL to")
	countries := fs.String("countries", "", "allowed countries, comma-separated (token_countries)")
	blocked := fs.String("countries-blocked", "", "blocked countries, comma-separated (token_countries_blocked)")
	pathForm := fs.Bool("path-form", false, "put the token in the path (/bcdn_token=…/path) so relative URIs inherit it")
	ignore := fs.Bool("ignore-params", false, "sign token_ignore_params=true")
	limit := fs.Int64("limit", 0, "speed limit in kB/s (0: none)")
	// cloudflare
	issued := fs.Int64("issued", 0, "cloudflare: the issue time, Unix seconds")
	// cloudfront
	keyPairID := fs.String("key-pair-id", "", "cloudfront: key pair (public key) id")
	privateKey := fs.String("private-key", "", "cloudfront: PEM RSA private key file")
	wildcardDir := fs.String("wildcard-dir", "", "cloudfront: sign a custom policy for everything below this directory")
	sha256 := fs.Bool("sha256", false, "cloudfront: RSA-SHA256 instead of RSA-SHA1")
	// s3presign
	s3Endpoint := fs.String("s3-endpoint", "", "s3presign: endpoint URL (R2: https://<account>.r2.cloudflarestorage.com)")
	s3Bucket := fs.String("s3-bucket", "", "s3presign: bucket")
	s3Region := fs.String("s3-region", "auto", "s3presign: region")
	s3Key := fs.String("s3-access-key-id", "", "s3presign: access key id")
	s3Secret := fs.String("s3-secret-access-key", "", "s3presign: secret access key")
	s3PathStyle := fs.Bool("s3-path-style", false, "s3presign: path-style URLs")
	signingTime := fs.String("signing-time", "", "s3presign: pin the signing time, e.g. 20260101T000000Z")
	expiresIn := fs.Int64("expires-in", 3600, "s3presign: lifetime in seconds")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	switch *provider {
	case "cloudflare":
		return signCloudflare(stdout, *base, *key, *path, *issued)
	case "cloudfront":
		return signCloudFront(stdout, *base, *keyPairID, *privateKey, *path, *wildcardDir, *expires, *sha256)
	case "s3presign":
		return signS3(stdout, *s3Endpoint, *s3Bucket, *s3Region, *s3Key, *s3Secret, *s3PathStyle, *signingTime, *expiresIn, *path)
	}
	if *key == "" || *base == "" || *path == "" {
		return usageError("--key, --base-url and --path are required")
	}
	// Vectors and debugging use providers' short example keys, so the
	// key-length rule for running services does not apply here.
	s, err := token.NewUnchecked(*provider, *base, []byte(*key))
	if err != nil {
		return usageError("%v", err)
	}
	r := token.Request{Path: *path, Expires: *expires, TokenPath: *tokenPath, PathForm: *pathForm,
		Countries: *countries, CountriesBlocked: *blocked, Limit: *limit, IgnoreParams: *ignore}
	if r.Expires == 0 {
		r.Expires = time.Now().Add(time.Hour).Unix()
	}
	if *ip != "" {
		if r.IP, err = netip.ParseAddr(*ip); err != nil {
			return usageError("--ip %q is not an IP address", *ip)
		}
	}
	u, err := s.AppendURL(nil, &r)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, string(u))
	return nil
}

// verifyCmd checks a signed URL as the edge would: "ok" and exit 0, or
// the reason and exit 1.
func verifyCmd(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("signer verify", flag.ContinueOnError)
	provider := fs.String("provider", "bunny", "URL scheme: bunny, bunny-sha256, bunny-md5 or origin")
	key := fs.String("key", "", "security key")
	previous := fs.String("previous-key", "", "previous security key, also accepted")
	rawURL := fs.String("url", "", "the signed URL")
	ip := fs.String("ip", "", "the client's IP address")
	at := fs.Int64("now", 0, "check as of this Unix time (default: now)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if *key == "" || *rawURL == "" {
		return usageError("--key and --url are required")
	}
	u, err := url.Parse(*rawURL)
	if err != nil || u.Host == "" {
		return usageError("--url %q is not an absolute URL", *rawURL)
	}
	v, err := token.NewUnchecked(*provider, u.Scheme+"://"+u.Host, []byte(*key), []byte(*previous))
	if err != nil {
		return usageError("%v", err)
	}
	var client netip.Addr
	if *ip != "" {
		if client, err = netip.ParseAddr(*ip); err != nil {
			return usageError("--ip %q is not an IP address", *ip)
		}
	}
	now := time.Now()
	if *at != 0 {
		now = time.Unix(*at, 0)
	}
	if _, err := v.Verify(u.RequestURI(), client, now); err != nil {
		fmt.Fprintln(stdout, err)
		return fmt.Errorf("%w: %w", errReported, err)
	}
	fmt.Fprintln(stdout, "ok")
	return nil
}

func signCloudflare(stdout io.Writer, base, key, path string, issued int64) error {
	if key == "" || base == "" || path == "" || issued == 0 {
		return usageError("cloudflare needs --key, --base-url, --path and --issued")
	}
	mac := token.CloudflareMAC([]byte(key), path, issued)
	fmt.Fprintf(stdout, "%s%s?verify=%d-%s\n", strings.TrimRight(base, "/"), path, issued, url.QueryEscape(mac))
	return nil
}

func signCloudFront(stdout io.Writer, base, keyPairID, keyFile, path, dir string, expires int64, sha256 bool) error {
	if base == "" || keyPairID == "" || keyFile == "" || path == "" || expires == 0 {
		return usageError("cloudfront needs --base-url, --key-pair-id, --private-key, --path and --expires")
	}
	pem, err := os.ReadFile(keyFile)
	if err != nil {
		return usageError("--private-key: %v", err)
	}
	hash := crypto.SHA1
	if sha256 {
		hash = crypto.SHA256
	}
	cf, err := token.NewCloudFront(base, keyPairID, pem, hash)
	if err != nil {
		return usageError("%v", err)
	}
	u, err := cf.AppendURL(nil, &token.Request{Path: path, TokenPath: dir, Expires: expires})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, string(u))
	return nil
}

func signS3(stdout io.Writer, endpoint, bucket, region, keyID, secret string, pathStyle bool, signingTime string, expiresIn int64, path string) error {
	if bucket == "" || keyID == "" || secret == "" || path == "" {
		return usageError("s3presign needs --s3-bucket, --s3-access-key-id, --s3-secret-access-key and --path")
	}
	if endpoint != "" && !strings.Contains(endpoint, "://") {
		return usageError("--s3-endpoint %q needs a scheme, e.g. https://%s", endpoint, endpoint)
	}
	opts := s3.Options{Region: region, UsePathStyle: pathStyle,
		Credentials: credentials.NewStaticCredentialsProvider(keyID, secret, "")}
	if endpoint != "" {
		opts.BaseEndpoint = &endpoint
	}
	p := token.NewS3Presign(s3.New(opts), bucket)
	now := time.Now()
	if signingTime != "" {
		t, err := time.Parse("20060102T150405Z", signingTime)
		if err != nil {
			return usageError("--signing-time %q is not like 20260101T000000Z", signingTime)
		}
		p, now = p.WithSigningTime(t), t
	}
	u, err := p.AppendURL(nil, &token.Request{Path: "/" + strings.TrimPrefix(path, "/"), Expires: now.Unix() + expiresIn})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, string(u))
	return nil
}
