package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"time"

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
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
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
