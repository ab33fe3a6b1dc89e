// Package problem writes RFC 9457 problem details (application/problem+json)
// from fasthttp handlers. Every playgate service answers errors this way,
// with a `type` URI whose last segment is stable and documented, so that
// clients can branch on it.
package problem

import (
	"encoding/json"

	"github.com/valyala/fasthttp"
)

// TypeBase prefixes every problem type; the suffix is the stable part.
const TypeBase = "https://playgate.dev/problems/"

// ContentType is the media type of a problem body (RFC 9457 §3).
const ContentType = "application/problem+json"

// Type is the stable suffix of a problem type URI.
type Type string

// The problem types playgate answers with.
const (
	InvalidBody          Type = "invalid-body"
	InvalidID            Type = "invalid-id"
	InvalidParameter     Type = "invalid-parameter"
	Unauthorized         Type = "unauthorized"
	Forbidden            Type = "forbidden"
	NotFound             Type = "not-found"
	MethodNotAllowed     Type = "method-not-allowed"
	Conflict             Type = "conflict"
	NotReady             Type = "not-ready"
	PreconditionFailed   Type = "precondition-failed"
	PreconditionRequired Type = "precondition-required"
	TooLarge             Type = "too-large"
	UnsupportedMediaType Type = "unsupported-media-type"
	RangeNotSatisfiable  Type = "range-not-satisfiable"
	PurchaseRequired     Type = "purchase-required"
	Unavailable          Type = "unavailable"
	TooManyUploads       Type = "too-many-uploads"
	Internal             Type = "internal"
)

// Problem is the body of an error response.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
}

// Write answers the request with status and a problem of type t. detail
// is for humans and must not leak internals.
func Write(ctx *fasthttp.RequestCtx, status int, t Type, detail string) {
	body, _ := json.Marshal(Problem{
		Type:     TypeBase + string(t),
		Title:    fasthttp.StatusMessage(status),
		Status:   status,
		Detail:   detail,
		Instance: string(ctx.Path()),
	})
	ctx.Response.ResetBody()
	ctx.SetStatusCode(status)
	ctx.SetContentType(ContentType)
	// fasthttp sends no body for HEAD but keeps its Content-Length.
	ctx.SetBody(body)
}

// WriteUncacheable is Write for an answer that replaces one the handler
// had begun to describe: it drops the validators and representation
// headers already set, and forbids any cache to keep the problem. A CDN
// would otherwise keep an error in place of an immutable object.
func WriteUncacheable(ctx *fasthttp.RequestCtx, status int, t Type, detail string) {
	h := &ctx.Response.Header
	for _, name := range [...]string{fasthttp.HeaderETag, fasthttp.HeaderLastModified,
		fasthttp.HeaderContentDisposition, fasthttp.HeaderContentEncoding} {
		h.Del(name)
	}
	h.Set(fasthttp.HeaderCacheControl, "no-store")
	Write(ctx, status, t, detail)
}
