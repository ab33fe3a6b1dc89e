package purge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudfront"
	"github.com/aws/aws-sdk-go-v2/service/cloudfront/types"
)

// Bunny purges Bunny.net pull zones by URL: POST {api}/purge?url=… with
// the account's AccessKey header. A directory becomes a wildcard URL
// ("…/hls/{track}/*"), which Bunny's purge supports.
type Bunny struct {
	API     string // https://api.bunny.net
	ZoneURL string // https://zone.b-cdn.net
	Key     string
	HTTP    *http.Client
}

// Purge implements Client.
func (b *Bunny) Purge(ctx context.Context, paths []string) error {
	for _, p := range paths {
		u := strings.TrimRight(b.ZoneURL, "/") + "/" + p
		if strings.HasSuffix(p, "/") {
			u += "*"
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost,
			strings.TrimRight(b.API, "/")+"/purge?url="+url.QueryEscape(u)+"&async=false", nil)
		if err != nil {
			return err
		}
		req.Header.Set("AccessKey", b.Key)
		if err := send(b.HTTP, req, "bunny"); err != nil {
			return err
		}
	}
	return nil
}

// SelfHosted purges playgate's own edge (deploy/edge) through its
// loopback endpoint, GET {url}/purge/{object path}, one object at a time:
// the edge caches by object path, so a directory is expanded into its
// objects with List (the api lists its storage).
type SelfHosted struct {
	URL  string // e.g. http://127.0.0.1:8084
	List func(ctx context.Context, prefix string) ([]string, error)
	HTTP *http.Client
}

// Expand implements Expander: every directory in paths becomes the
// objects storage holds below it now.
func (s *SelfHosted) Expand(ctx context.Context, paths []string) ([]string, error) {
	var keys []string
	for _, p := range paths {
		if !strings.HasSuffix(p, "/") {
			keys = append(keys, p)
			continue
		}
		below, err := s.List(ctx, p)
		if err != nil {
			return nil, &RetryableError{fmt.Errorf("purge: selfhosted: cannot list %s: %w", p, err)}
		}
		keys = append(keys, below...)
	}
	return keys, nil
}

// Purge implements Client.
func (s *SelfHosted) Purge(ctx context.Context, paths []string) error {
	keys, err := s.Expand(ctx, paths)
	if err != nil {
		return err
	}
	for _, k := range keys {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(s.URL, "/")+"/purge/"+k, nil)
		if err != nil {
			return err
		}
		client := s.HTTP
		if client == nil {
			client = http.DefaultClient
		}
		resp, err := client.Do(req)
		if err != nil {
			return &RetryableError{fmt.Errorf("purge: selfhosted: %w", err)}
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound {
			continue // not cached
		}
		if err := statusError("selfhosted", resp); err != nil {
			return err
		}
	}
	return nil
}

// Cloudflare purges a zone by URL (files) and, for directories, by
// prefix: POST {api}/zones/{zone}/purge_cache with an API token.
type Cloudflare struct {
	API     string // https://api.cloudflare.com/client/v4
	Zone    string
	Token   string
	SiteURL string // https://media.example.com
	HTTP    *http.Client
}

// Purge implements Client.
func (c *Cloudflare) Purge(ctx context.Context, paths []string) error {
	var body struct {
		Files    []string `json:"files,omitempty"`
		Prefixes []string `json:"prefixes,omitempty"`
	}
	site := strings.TrimRight(c.SiteURL, "/")
	for _, p := range paths {
		if strings.HasSuffix(p, "/") {
			// Cloudflare's prefixes are host + path, without a scheme.
			body.Prefixes = append(body.Prefixes, strings.TrimPrefix(strings.TrimPrefix(site, "https://"), "http://")+"/"+p)
		} else {
			body.Files = append(body.Files, site+"/"+p)
		}
	}
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		strings.TrimRight(c.API, "/")+"/zones/"+url.PathEscape(c.Zone)+"/purge_cache", bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("Content-Type", "application/json")
	return send(c.HTTP, req, "cloudflare")
}

// CloudFront purges with a CreateInvalidation of the paths (directories
// as "/dir/*") through aws-sdk-go-v2.
type CloudFront struct {
	Client       *cloudfront.Client
	Distribution string
}

// Purge implements Client.
func (c *CloudFront) Purge(ctx context.Context, paths []string) error {
	items := make([]string, len(paths))
	for i, p := range paths {
		items[i] = "/" + p
		if strings.HasSuffix(p, "/") {
			items[i] += "*"
		}
	}
	ref := "playgate-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	_, err := c.Client.CreateInvalidation(ctx, &cloudfront.CreateInvalidationInput{
		DistributionId: &c.Distribution,
		InvalidationBatch: &types.InvalidationBatch{
			CallerReference: &ref,
			Paths:           &types.Paths{Quantity: aws.Int32(int32(len(items))), Items: items},
		},
	})
	if err != nil {
		var tooMany *types.TooManyInvalidationsInProgress
		var re interface{ HTTPStatusCode() int }
		if errors.As(err, &tooMany) || (errors.As(err, &re) && (re.HTTPStatusCode() == 429 || re.HTTPStatusCode() >= 500)) {
			return &RetryableError{err}
		}
		return fmt.Errorf("purge: cloudfront: %w", err)
	}
	return nil
}

func send(client *http.Client, req *http.Request, provider string) error {
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return &RetryableError{fmt.Errorf("purge: %s: %w", provider, err)}
	}
	defer resp.Body.Close()
	return statusError(provider, resp)
}
