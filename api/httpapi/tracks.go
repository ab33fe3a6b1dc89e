package httpapi

import (
	"context"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/valyala/fasthttp"

	"github.com/playgate/playgate/api/auth"
	"github.com/playgate/playgate/api/catalog"
	"github.com/playgate/playgate/api/purge"
	"github.com/playgate/playgate/internal/problem"
	"github.com/playgate/playgate/origin/storage"
)

const (
	defaultPageSize = 50
	maxPageSize     = 200
	defaultShareTTL = 7 * 24 * time.Hour
	maxShareTTL     = 365 * 24 * time.Hour
)

func (s *Server) createTrack(c context.Context, ctx *fasthttp.RequestCtx) {
	caller := s.requireCaller(ctx)
	if caller == nil {
		return
	}
	var n catalog.NewTrack
	if !decodeValid(ctx, &n) {
		return
	}
	t, err := s.store.CreateTrack(c, caller.Subject, n)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	ctx.Response.Header.Set(fasthttp.HeaderLocation, "/v1/tracks/"+t.ID.String())
	writeTrack(ctx, fasthttp.StatusCreated, t)
}

// getTrack shows a track to whoever may play it (SPEC §4.2): public and
// unlisted to anyone, private to the owner or the holder of a valid share
// token; everything else is the same 404.
func (s *Server) getTrack(c context.Context, ctx *fasthttp.RequestCtx) {
	id, ok := pathID(ctx, "id")
	if !ok {
		return
	}
	caller, err := s.caller(ctx)
	if err != nil {
		problem.Write(ctx, fasthttp.StatusUnauthorized, problem.Unauthorized, "the bearer token is not valid")
		return
	}
	t, err := s.store.Track(c, id)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	if t.Visibility == catalog.Private && (caller == nil || caller.Subject != t.OwnerID) {
		share := string(ctx.QueryArgs().Peek("share"))
		opens := false
		if catalog.ValidShareTokenSyntax(share) {
			if opens, err = s.store.ShareOpens(c, id, catalog.HashShareToken(share)); err != nil {
				s.fail(ctx, err)
				return
			}
		}
		if !opens {
			s.fail(ctx, catalog.ErrNotFound)
			return
		}
	}
	writeTrack(ctx, fasthttp.StatusOK, t)
}

type trackPage struct {
	Items      []catalog.Track `json:"items"`
	NextCursor *string         `json:"next_cursor"`
}

// listTracks lists the caller's tracks (owner=me) or the public catalogue
// (no owner), newest first, by keyset pagination.
func (s *Server) listTracks(c context.Context, ctx *fasthttp.RequestCtx) {
	args := ctx.QueryArgs()
	limit := defaultPageSize
	if raw := args.Peek("limit"); len(raw) > 0 {
		n, err := strconv.Atoi(string(raw))
		if err != nil || n < 1 || n > maxPageSize {
			problem.Write(ctx, fasthttp.StatusBadRequest, problem.InvalidParameter,
				"limit must be a whole number from 1 to "+strconv.Itoa(maxPageSize))
			return
		}
		limit = n
	}
	var cursor uuid.UUID
	if raw := string(args.Peek("cursor")); raw != "" {
		c, err := catalog.ParseID(raw)
		if err != nil {
			problem.Write(ctx, fasthttp.StatusBadRequest, problem.InvalidParameter, "cursor is not one this API returned")
			return
		}
		cursor = c
	}
	var page catalog.Page
	var err error
	switch owner := string(args.Peek("owner")); owner {
	case "me":
		caller := s.requireCaller(ctx)
		if caller == nil {
			return
		}
		page, err = s.store.ListByOwner(c, caller.Subject, cursor, limit)
	case "":
		if _, err := s.caller(ctx); err != nil {
			problem.Write(ctx, fasthttp.StatusUnauthorized, problem.Unauthorized, "the bearer token is not valid")
			return
		}
		page, err = s.store.ListPublic(c, cursor, limit)
	default:
		problem.Write(ctx, fasthttp.StatusBadRequest, problem.InvalidParameter, `owner must be "me" or absent`)
		return
	}
	if err != nil {
		s.fail(ctx, err)
		return
	}
	out := trackPage{Items: page.Tracks}
	if out.Items == nil {
		out.Items = []catalog.Track{}
	}
	if page.Next != uuid.Nil {
		next := page.Next.String()
		out.NextCursor = &next
	}
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store")
	writeJSON(ctx, fasthttp.StatusOK, out)
}

func (s *Server) patchTrack(c context.Context, ctx *fasthttp.RequestCtx) {
	caller := s.requireCaller(ctx)
	if caller == nil {
		return
	}
	id, ok := pathID(ctx, "id")
	if !ok {
		return
	}
	ifVersion, ok := ifMatchVersion(ctx)
	if !ok {
		return
	}
	var patch catalog.TrackPatch
	if !decodeValid(ctx, &patch) {
		return
	}
	if _, ok := s.ownedTrack(c, ctx, caller, id); !ok {
		return
	}
	queuePurge, committed := s.purges(c)
	t, err := s.store.UpdateTrack(c, id, patch, ifVersion, queuePurge)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	committed()
	writeTrack(ctx, fasthttp.StatusOK, t)
}

// ifMatchVersion reads If-Match as a track version: "3", 3, or * (any).
// Absent means unconditional. A value that is no version answers 412: it
// cannot match the current ETag (RFC 9110 §13.1.1).
func ifMatchVersion(ctx *fasthttp.RequestCtx) (*int64, bool) {
	raw := strings.TrimSpace(string(ctx.Request.Header.Peek(fasthttp.HeaderIfMatch)))
	if raw == "" || raw == "*" {
		return nil, true
	}
	v, err := strconv.ParseInt(strings.Trim(raw, `"`), 10, 64)
	if err != nil || strings.HasPrefix(raw, "W/") {
		problem.Write(ctx, fasthttp.StatusPreconditionFailed, problem.PreconditionFailed,
			`If-Match must be the track's ETag, e.g. "3"`)
		return nil, false
	}
	return &v, true
}

func (s *Server) deleteTrack(c context.Context, ctx *fasthttp.RequestCtx) {
	caller := s.requireCaller(ctx)
	if caller == nil {
		return
	}
	id, ok := pathID(ctx, "id")
	if !ok {
		return
	}
	if _, ok := s.ownedTrack(c, ctx, caller, id); !ok {
		return
	}
	queuePurge, committed := s.purges(c)
	if tx, ok := s.purger.(purge.TxPurger); ok && s.cfg.PurgeAgainAfter > 0 {
		// Now, and once no URL signed before the delete works.
		queuePurge = func(ctx context.Context, dbtx pgx.Tx, paths []string) error {
			return tx.PurgeTxAt(ctx, dbtx, paths, time.Time{}, time.Now().Add(s.cfg.PurgeAgainAfter))
		}
	}
	t, err := s.store.DeleteTrack(c, id, queuePurge)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	// The row is gone for every reader now (the signers were notified in
	// the same transaction); the bytes follow.
	s.deleteObjects(c, t)
	committed()
	if _, ok := s.purger.(purge.TxPurger); ok {
		// The purge committed with the delete may have run before the
		// bytes were gone, and a player with a URL signed before the
		// delete may have filled the edge again from the origin since.
		// Once the origin has nothing left to give, one more purge
		// leaves the edge nothing to serve. Should this one be lost,
		// the one committed for later (PurgeAgainAfter) still runs.
		s.purger.Purge(c, t.CDNPaths())
	}
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}

// purges is how a write purges the CDN of what it makes unreachable: the
// catalog.Purge to run in its transaction, and what to call once it has
// committed. A purger that keeps its jobs in PostgreSQL inserts them in
// the write's own transaction, so that no crash between the commit and
// the insert loses one; any other is handed the paths after the commit.
func (s *Server) purges(c context.Context) (catalog.Purge, func()) {
	if tx, ok := s.purger.(purge.TxPurger); ok {
		return tx.PurgeTx, func() {}
	}
	var paths []string
	return func(_ context.Context, _ pgx.Tx, p []string) error {
			paths = append(paths, p...)
			return nil
		}, func() {
			if len(paths) > 0 {
				s.purger.Purge(c, paths)
			}
		}
}

// deleteObjects removes a deleted track's original and HLS packages.
// Failures are logged and counted, not returned: the track is already
// deleted, and what is left is unreachable garbage, not a visible error.
func (s *Server) deleteObjects(c context.Context, t catalog.Track) {
	for name, b := range s.backends {
		if t.ObjectKey != nil && *t.StorageBackend == name {
			if err := b.Delete(c, *t.ObjectKey); err != nil {
				s.orphanObjects.Inc()
				s.log.Error("cannot delete original of deleted track", "track", t.ID, "key", *t.ObjectKey, "err", err)
			}
		}
		var keys []string
		err := b.List(c, catalog.HLSDir(t.ID), func(o storage.Object) error {
			keys = append(keys, o.Key)
			return nil
		})
		for _, k := range keys {
			if derr := b.Delete(c, k); derr != nil && err == nil {
				err = derr
			}
		}
		if err != nil {
			s.orphanObjects.Inc()
			s.log.Error("cannot delete HLS objects of deleted track", "track", t.ID, "backend", name, "err", err)
		}
	}
}

func (s *Server) createShare(c context.Context, ctx *fasthttp.RequestCtx) {
	caller := s.requireCaller(ctx)
	if caller == nil {
		return
	}
	id, ok := pathID(ctx, "id")
	if !ok {
		return
	}
	var req struct {
		ExpiresIn *int64 `json:"expires_in"` // seconds
	}
	if !decodeJSON(ctx, &req) {
		return
	}
	expiresIn := int64(defaultShareTTL.Seconds())
	if req.ExpiresIn != nil {
		expiresIn = *req.ExpiresIn
	}
	if expiresIn < 60 || expiresIn > int64(maxShareTTL.Seconds()) {
		problem.Write(ctx, fasthttp.StatusBadRequest, problem.InvalidBody,
			"expires_in is in seconds, from 60 to "+strconv.FormatInt(int64(maxShareTTL.Seconds()), 10))
		return
	}
	if _, ok := s.ownedTrack(c, ctx, caller, id); !ok {
		return
	}
	token, hash := catalog.NewShareToken()
	sh, err := s.store.CreateShare(c, id, caller.Subject, hash, time.Now().Add(time.Duration(expiresIn)*time.Second))
	if err != nil {
		s.fail(ctx, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusCreated, struct {
		catalog.Share
		Token string `json:"token"`
		URL   string `json:"url"`
	}{sh, token, s.cfg.SignerURL + "/v1/tracks/" + id.String() + "/stream?share=" + token})
}

func (s *Server) revokeShare(c context.Context, ctx *fasthttp.RequestCtx) {
	caller := s.requireCaller(ctx)
	if caller == nil {
		return
	}
	id, ok := pathID(ctx, "id")
	if !ok {
		return
	}
	sh, owner, err := s.store.ShareOwner(c, id)
	if err == nil && owner != caller.Subject && sh.CreatedBy != caller.Subject {
		err = catalog.ErrNotFound // a share link is a secret: no oracle either
	}
	if err != nil {
		s.fail(ctx, err)
		return
	}
	if err := s.store.RevokeShare(c, id); err != nil {
		s.fail(ctx, err)
		return
	}
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}

// licenseTrack authorises a licence change: the track's owner, or a
// service token with the marketplace role.
func (s *Server) licenseTrack(c context.Context, ctx *fasthttp.RequestCtx) (uuid.UUID, string, *auth.Claims, bool) {
	caller := s.requireCaller(ctx)
	if caller == nil {
		return uuid.Nil, "", nil, false
	}
	id, ok := pathID(ctx, "id")
	if !ok {
		return uuid.Nil, "", nil, false
	}
	// The router matches the raw path, so parameters arrive encoded.
	raw, _ := ctx.UserValue("user").(string)
	user, err := url.PathUnescape(raw)
	if err == nil {
		err = catalog.ValidateLabel("user id", user)
	}
	if err != nil {
		problem.Write(ctx, fasthttp.StatusBadRequest, problem.InvalidID, err.Error())
		return uuid.Nil, "", nil, false
	}
	if caller.Role != auth.RoleMarketplace {
		if _, ok := s.ownedTrack(c, ctx, caller, id); !ok {
			return uuid.Nil, "", nil, false
		}
	}
	return id, user, caller, true
}

func (s *Server) grantLicense(c context.Context, ctx *fasthttp.RequestCtx) {
	id, user, caller, ok := s.licenseTrack(c, ctx)
	if !ok {
		return
	}
	source := "owner"
	if caller.Role == auth.RoleMarketplace {
		source = auth.RoleMarketplace
	}
	if len(ctx.Request.Header.ContentType()) > 0 || ctx.Request.Header.ContentLength() > 0 {
		var req struct {
			Source *string `json:"source"`
		}
		if !decodeJSON(ctx, &req) {
			return
		}
		if req.Source != nil {
			if err := catalog.ValidateLabel("source", *req.Source); err != nil {
				problem.Write(ctx, fasthttp.StatusBadRequest, problem.InvalidBody, err.Error())
				return
			}
			source = *req.Source
		}
	}
	l, err := s.store.GrantLicense(c, id, user, source)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, l)
}

func (s *Server) revokeLicense(c context.Context, ctx *fasthttp.RequestCtx) {
	id, user, _, ok := s.licenseTrack(c, ctx)
	if !ok {
		return
	}
	if err := s.store.RevokeLicense(c, id, user); err != nil {
		if errors.Is(err, catalog.ErrNotFound) {
			problem.Write(ctx, fasthttp.StatusNotFound, problem.NotFound, "no active licence for that user")
			return
		}
		s.fail(ctx, err)
		return
	}
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}
