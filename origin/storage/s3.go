package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// S3Config names a bucket on an S3-compatible service (AWS S3, Cloudflare
// R2, MinIO, versitygw).
type S3Config struct {
	Endpoint        string // empty: AWS's regional endpoint
	Bucket          string
	Region          string
	AccessKeyID     string
	SecretAccessKey string
	ForcePathStyle  bool
	// PartSize is the multipart upload part size (default 8 MiB, min 5 MiB).
	PartSize int64
	// MaxIdleConns is how many connections to the bucket's endpoint stay
	// open between requests (0: DefaultS3MaxIdleConns).
	MaxIdleConns int
}

// DefaultS3MaxIdleConns is S3Config.MaxIdleConns's default. The origin
// turns a CDN's concurrent misses into as many concurrent GETs to one
// host; the SDK's own default keeps 10 of those connections, so each
// burst above that paid new TCP and TLS handshakes.
const DefaultS3MaxIdleConns = 256

// Validate reports every problem with the configuration at once.
func (c S3Config) Validate() error {
	var errs []error
	if c.Bucket == "" {
		errs = append(errs, errors.New("S3_BUCKET is required"))
	}
	if c.Region == "" {
		errs = append(errs, errors.New("S3_REGION is required (R2: auto)"))
	}
	if c.MaxIdleConns < 0 {
		errs = append(errs, fmt.Errorf("S3_MAX_IDLE_CONNS must not be negative, not %d", c.MaxIdleConns))
	}
	if c.Endpoint != "" {
		u, err := url.Parse(c.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("S3_ENDPOINT %q must be an absolute http(s) URL", c.Endpoint))
		}
	}
	if (c.AccessKeyID == "") != (c.SecretAccessKey == "") {
		errs = append(errs, errors.New("S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY go together"))
	}
	if c.PartSize != 0 && c.PartSize < 5<<20 {
		errs = append(errs, errors.New("S3 part size must be at least 5 MiB"))
	}
	return errors.Join(errs...)
}

// S3 stores objects in one bucket.
type S3 struct {
	client   *s3.Client
	uploader *transfermanager.Client
	bucket   string
}

// NewS3Client builds an aws-sdk-go-v2 S3 client from cfg. Static keys
// win when given; otherwise the SDK's default chain supplies credentials
// (environment, shared files, an instance or pod role).
func NewS3Client(ctx context.Context, cfg S3Config) (*s3.Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var loadOpts []func(*config.LoadOptions) error
	loadOpts = append(loadOpts, config.WithRegion(cfg.Region))
	if cfg.AccessKeyID != "" {
		loadOpts = append(loadOpts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, "")))
	}
	idle := cfg.MaxIdleConns
	if idle <= 0 {
		idle = DefaultS3MaxIdleConns
	}
	loadOpts = append(loadOpts, config.WithHTTPClient(awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.MaxIdleConns = idle
		tr.MaxIdleConnsPerHost = idle
	})))
	awsCfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("storage: cannot load AWS configuration: %w", err)
	}
	return s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		o.UsePathStyle = cfg.ForcePathStyle
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		// Checksums on every request suit AWS; R2, MinIO and other
		// gateways differ in what they accept. Send them when required.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	}), nil
}

// NewS3 wraps a client for one bucket.
func NewS3(client *s3.Client, bucket string, partSize int64) (*S3, error) {
	if bucket == "" {
		return nil, errors.New("storage: s3 backend needs a bucket")
	}
	if partSize == 0 {
		partSize = 8 << 20
	}
	uploader := transfermanager.New(client, func(o *transfermanager.Options) {
		o.PartSizeBytes = partSize
		o.MultipartUploadThreshold = partSize
		// A client that went away must not leave parts billed forever:
		// abort on a fresh context even when the request's is cancelled.
		o.FailTimeout = 30 * time.Second
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
	})
	return &S3{client: client, uploader: uploader, bucket: bucket}, nil
}

// Name implements Backend.
func (b *S3) Name() string { return "s3" }

// Client exposes the SDK client (the signer presigns with it).
func (b *S3) Client() *s3.Client { return b.client }

// Bucket is the bucket's name.
func (b *S3) Bucket() string { return b.bucket }

// Open implements Backend, passing the range through to the bucket.
func (b *S3) Open(ctx context.Context, key string, offset, length int64) (io.ReadCloser, Object, error) {
	if err := ValidateKey(key); err != nil {
		return nil, Object{}, err
	}
	in := &s3.GetObjectInput{Bucket: &b.bucket, Key: &key}
	if offset > 0 || length >= 0 {
		r := "bytes=" + strconv.FormatInt(offset, 10) + "-"
		if length >= 0 {
			if length == 0 {
				// S3 cannot express an empty range; the caller wants
				// nothing, so give it nothing after checking existence.
				obj, err := b.Stat(ctx, key)
				if err != nil {
					return nil, Object{}, err
				}
				return io.NopCloser(strings.NewReader("")), obj, nil
			}
			r += strconv.FormatInt(offset+length-1, 10)
		}
		in.Range = &r
	}
	out, err := b.client.GetObject(ctx, in)
	if err != nil {
		return nil, Object{}, mapS3Error(key, err)
	}
	obj := Object{Key: key, Size: aws.ToInt64(out.ContentLength), ETag: unquote(aws.ToString(out.ETag))}
	if out.LastModified != nil {
		obj.ModTime = *out.LastModified
	}
	if cr := aws.ToString(out.ContentRange); cr != "" {
		// "bytes 0-99/1234": the whole object's size is after the slash.
		if i := strings.LastIndexByte(cr, '/'); i >= 0 {
			if n, err := strconv.ParseInt(cr[i+1:], 10, 64); err == nil {
				obj.Size = n
			}
		}
	}
	return out.Body, obj, nil
}

// Stat implements Backend.
func (b *S3) Stat(ctx context.Context, key string) (Object, error) {
	if err := ValidateKey(key); err != nil {
		return Object{}, err
	}
	out, err := b.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &b.bucket, Key: &key})
	if err != nil {
		return Object{}, mapS3Error(key, err)
	}
	obj := Object{Key: key, Size: aws.ToInt64(out.ContentLength), ETag: unquote(aws.ToString(out.ETag))}
	if out.LastModified != nil {
		obj.ModTime = *out.LastModified
	}
	return obj, nil
}

// Put implements Backend: a single PUT for small bodies, a streaming
// multipart upload (aborted on failure) for large ones. S3 makes an object
// visible only when its upload completes.
func (b *S3) Put(ctx context.Context, key string, r io.Reader, contentType string) (Object, error) {
	if err := ValidateKey(key); err != nil {
		return Object{}, err
	}
	in := &transfermanager.UploadObjectInput{Bucket: &b.bucket, Key: &key, Body: r}
	if contentType != "" {
		in.ContentType = &contentType
	}
	if _, err := b.uploader.UploadObject(ctx, in); err != nil {
		return Object{}, fmt.Errorf("storage: cannot upload %s: %w", key, err)
	}
	return b.Stat(ctx, key)
}

// Rename implements Backend with a server-side copy and a delete. S3's
// single CopyObject handles objects up to 5 GiB.
func (b *S3) Rename(ctx context.Context, from, to string) error {
	if err := ValidateKey(from); err != nil {
		return err
	}
	if err := ValidateKey(to); err != nil {
		return err
	}
	// CopySource is "bucket/key" with the key URL-encoded.
	src := b.bucket + "/" + (&url.URL{Path: from}).EscapedPath()
	if _, err := b.client.CopyObject(ctx, &s3.CopyObjectInput{Bucket: &b.bucket, Key: &to, CopySource: &src}); err != nil {
		return mapS3Error(from, err)
	}
	return b.Delete(ctx, from)
}

// Delete implements Backend.
func (b *S3) Delete(ctx context.Context, key string) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	if _, err := b.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &b.bucket, Key: &key}); err != nil {
		if err := mapS3Error(key, err); !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	return nil
}

// List implements Backend.
func (b *S3) List(ctx context.Context, prefix string, fn func(Object) error) error {
	if err := validatePrefix(prefix); err != nil {
		return err
	}
	p := s3.NewListObjectsV2Paginator(b.client, &s3.ListObjectsV2Input{Bucket: &b.bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("storage: cannot list %q: %w", prefix, err)
		}
		for _, o := range page.Contents {
			obj := Object{Key: aws.ToString(o.Key), Size: aws.ToInt64(o.Size), ETag: unquote(aws.ToString(o.ETag))}
			if o.LastModified != nil {
				obj.ModTime = *o.LastModified
			}
			if err := fn(obj); err != nil {
				return err
			}
		}
	}
	return nil
}

// SweepInterrupted implements Sweeper: it aborts the multipart uploads to
// keys under prefix begun before cutoff, whose parts a process that died
// mid-Put left stored (and billed) where no listing of objects shows them.
// Buckets can do the same with a lifecycle rule
// (AbortIncompleteMultipartUpload); not every S3-compatible store has one.
func (b *S3) SweepInterrupted(ctx context.Context, prefix string, cutoff time.Time) (int, error) {
	if err := validatePrefix(prefix); err != nil {
		return 0, err
	}
	var stale []types.MultipartUpload
	p := s3.NewListMultipartUploadsPaginator(b.client, &s3.ListMultipartUploadsInput{Bucket: &b.bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return 0, fmt.Errorf("storage: cannot list the multipart uploads under %q: %w", prefix, err)
		}
		for _, u := range page.Uploads {
			if u.Initiated != nil && u.Initiated.Before(cutoff) {
				stale = append(stale, u)
			}
		}
	}
	removed := 0
	for _, u := range stale {
		_, err := b.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &b.bucket, Key: u.Key, UploadId: u.UploadId})
		var gone *types.NoSuchUpload
		if err != nil && !errors.As(err, &gone) {
			return removed, fmt.Errorf("storage: cannot abort the multipart upload of %s: %w", aws.ToString(u.Key), err)
		}
		removed++
	}
	return removed, nil
}

func mapS3Error(key string, err error) error {
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	if errors.As(err, &nsk) || errors.As(err, &nf) {
		return ErrNotFound
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "NoSuchKey", "NotFound":
			return ErrNotFound
		case "InvalidRange":
			return ErrRangeNotSatisfiable
		}
	}
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		switch re.HTTPStatusCode() {
		case http.StatusNotFound:
			return ErrNotFound
		case http.StatusRequestedRangeNotSatisfiable:
			return ErrRangeNotSatisfiable
		}
	}
	return fmt.Errorf("storage: s3 %s: %w", key, err)
}

func unquote(etag string) string { return strings.Trim(etag, `"`) }

// PresignGet returns a SigV4 presigned GET URL for key, valid for ttl,
// made by aws-sdk-go-v2's own presigner (SPEC §4.5: the signer's
// fallback when CDN signing fails for an object stored here).
func (b *S3) PresignGet(ctx context.Context, key string, ttl time.Duration, download string) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	in := &s3.GetObjectInput{Bucket: &b.bucket, Key: &key}
	if download != "" {
		cd := mime.FormatMediaType("attachment", map[string]string{"filename": download})
		in.ResponseContentDisposition = &cd
	}
	req, err := s3.NewPresignClient(b.client).PresignGetObject(ctx, in, s3.WithPresignExpires(ttl))
	if err != nil {
		return "", fmt.Errorf("storage: cannot presign %s: %w", key, err)
	}
	return req.URL, nil
}
