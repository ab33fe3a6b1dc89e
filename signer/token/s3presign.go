package token

import (
	"context"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// S3Presign makes SigV4 presigned GET URLs on the bucket itself (AWS S3,
// Cloudflare R2 with region "auto", MinIO, versitygw) with aws-sdk-go-v2's
// own presigner, so keys are escaped as S3 expects ("track 42.mp3" →
// "track%2042.mp3", never "%2520").
type S3Presign struct {
	client *s3.PresignClient
	bucket string
	// signingTime, when set, pins the signing time (reproducing vectors);
	// otherwise the time is now.
	signingTime time.Time
	now         func() time.Time
}

// NewS3Presign presigns for bucket with client.
func NewS3Presign(client *s3.Client, bucket string) *S3Presign {
	return &S3Presign{client: s3.NewPresignClient(client), bucket: bucket, now: time.Now}
}

// WithSigningTime pins the signing time, for tests against published
// vectors.
func (p *S3Presign) WithSigningTime(t time.Time) *S3Presign {
	q := *p
	q.signingTime = t
	q.now = func() time.Time { return t }
	return &q
}

type fixedTimePresigner struct {
	inner *v4.Signer
	t     time.Time
}

func (f fixedTimePresigner) PresignHTTP(ctx context.Context, creds aws.Credentials, r *http.Request, payloadHash, service, region string,
	_ time.Time, optFns ...func(*v4.SignerOptions)) (string, http.Header, error) {
	return f.inner.PresignHTTP(ctx, creds, r, payloadHash, service, region, f.t, optFns...)
}

// AppendURL implements Signer. A presigned URL opens one object and
// cannot be bound to an IP.
func (p *S3Presign) AppendURL(dst []byte, r *Request) ([]byte, error) {
	if len(r.Path) < 2 || r.Path[0] != '/' || r.TokenPath != "" || r.PathForm || r.IP.IsValid() {
		return dst, ErrRequest
	}
	ttl := time.Duration(r.Expires-p.now().Unix()) * time.Second
	if ttl <= 0 || ttl > 7*24*time.Hour { // SigV4's limits
		return dst, fmt.Errorf("%w: a presigned URL lives from 1 s to 7 days", ErrRequest)
	}
	key := strings.TrimPrefix(r.Path, "/")
	in := &s3.GetObjectInput{Bucket: &p.bucket, Key: &key}
	if r.Download != "" {
		cd := mime.FormatMediaType("attachment", map[string]string{"filename": r.Download})
		in.ResponseContentDisposition = &cd
	}
	opts := []func(*s3.PresignOptions){s3.WithPresignExpires(ttl)}
	if !p.signingTime.IsZero() {
		opts = append(opts, func(o *s3.PresignOptions) { o.Presigner = fixedTimePresigner{inner: v4.NewSigner(), t: p.signingTime} })
	}
	req, err := p.client.PresignGetObject(context.Background(), in, opts...)
	if err != nil {
		return dst, fmt.Errorf("%w: %w", ErrRequest, err)
	}
	return append(dst, req.URL...), nil
}
