package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/playgate/playgate/api/auth"
	"github.com/playgate/playgate/api/catalog"
	"github.com/playgate/playgate/api/purge"
)

// The whole life of a track, on each storage backend: create, upload,
// read, patch with If-Match, share, licence, delete.
func TestTrackLifecycle(t *testing.T) {
	for _, backend := range []string{"local", "s3"} {
		t.Run(backend, func(t *testing.T) {
			h := newHarness(t, harnessOptions{backend: backend})
			ctx := context.Background()
			audio := audioFixture(t, "tone.mp3")

			tr := h.createTrack("alice", "private", 0)
			assert.Equal(t, "alice", tr.OwnerID)
			assert.Equal(t, catalog.HLSNone, tr.HLSStatus)
			assert.Nil(t, tr.ObjectKey)
			id := tr.ID.String()

			// Upload: content-addressed key, hash and size from the stream.
			r := h.upload("alice", id, audio)
			require.Equal(t, http.StatusOK, r.status, "body: %s", r.body)
			r.json(t, &tr)
			sum := sha256.Sum256(audio)
			wantKey := "tracks/" + id + "/" + hex.EncodeToString(sum[:]) + ".mp3"
			require.NotNil(t, tr.ObjectKey)
			assert.Equal(t, wantKey, *tr.ObjectKey)
			assert.Equal(t, hex.EncodeToString(sum[:]), *tr.SHA256)
			assert.EqualValues(t, len(audio), *tr.SizeBytes)
			assert.Equal(t, "audio/mpeg", *tr.ContentType)
			assert.Equal(t, backend, *tr.StorageBackend)
			assert.Equal(t, []string{wantKey}, h.objectKeys(), "exactly the original is stored, no temporary left")
			rc, _, err := h.backend.Open(ctx, wantKey, 0, -1)
			require.NoError(t, err)
			stored, _ := io.ReadAll(rc)
			rc.Close()
			assert.True(t, bytes.Equal(audio, stored), "stored bytes are the uploaded bytes")

			// Reads follow the access rules.
			assert.Equal(t, http.StatusOK, h.do("GET", "/v1/tracks/"+id, "alice", nil).status)
			assert.Equal(t, http.StatusNotFound, h.do("GET", "/v1/tracks/"+id, "bob", nil).status)
			assert.Equal(t, http.StatusNotFound, h.do("GET", "/v1/tracks/"+id, "", nil).status)

			// PATCH with If-Match: the current version passes, a stale one is 412.
			r = h.doJSON("PATCH", "/v1/tracks/"+id, "alice", map[string]any{"title": "New title"},
				"If-Match", strconv.Quote(strconv.FormatInt(tr.Version, 10)))
			require.Equal(t, http.StatusOK, r.status, "body: %s", r.body)
			var patched catalog.Track
			r.json(t, &patched)
			assert.Equal(t, "New title", patched.Title)
			assert.Equal(t, tr.Version+1, patched.Version)
			assert.Equal(t, `"`+strconv.FormatInt(patched.Version, 10)+`"`, r.header.Get("ETag"))
			r = h.doJSON("PATCH", "/v1/tracks/"+id, "alice", map[string]any{"title": "Lost update"},
				"If-Match", strconv.Quote(strconv.FormatInt(tr.Version, 10)))
			assert.Equal(t, http.StatusPreconditionFailed, r.status)
			assert.Equal(t, "precondition-failed", r.problemType(t))

			// A share link opens the private track to anyone holding it.
			r = h.doJSON("POST", "/v1/tracks/"+id+"/shares", "alice", map[string]any{"expires_in": 3600})
			require.Equal(t, http.StatusCreated, r.status, "body: %s", r.body)
			var share struct {
				ID    string `json:"id"`
				Token string `json:"token"`
				URL   string `json:"url"`
			}
			r.json(t, &share)
			assert.Len(t, share.Token, catalog.ShareTokenLen)
			assert.Equal(t, "http://signer.test/v1/tracks/"+id+"/stream?share="+share.Token, share.URL)
			var stored64 []byte
			require.NoError(t, h.primary.QueryRow(ctx, `SELECT token_hash FROM share_links WHERE id = $1`, share.ID).Scan(&stored64))
			assert.Equal(t, catalog.HashShareToken(share.Token), stored64, "only the token's hash is stored")
			assert.Equal(t, http.StatusOK, h.do("GET", "/v1/tracks/"+id+"?share="+share.Token, "", nil).status)
			assert.Equal(t, http.StatusNotFound, h.do("GET", "/v1/tracks/"+id+"?share=AAAAAAAAAAAAAAAAAAAAAA", "", nil).status)
			assert.Equal(t, http.StatusNotFound, h.do("DELETE", "/v1/shares/"+share.ID, "bob", nil).status, "a stranger cannot revoke")
			assert.Equal(t, http.StatusNoContent, h.do("DELETE", "/v1/shares/"+share.ID, "alice", nil).status)
			assert.Equal(t, http.StatusNotFound, h.do("GET", "/v1/tracks/"+id+"?share="+share.Token, "", nil).status, "a revoked share opens nothing")

			// Licences: the owner or a marketplace service token.
			r = h.do("PUT", "/v1/tracks/"+id+"/licenses/bob", "alice", nil)
			require.Equal(t, http.StatusOK, r.status, "body: %s", r.body)
			var lic catalog.License
			r.json(t, &lic)
			assert.Equal(t, "bob", lic.UserID)
			assert.Equal(t, "owner", lic.Source)
			market, err := auth.Mint(secret, auth.MintOptions{Subject: "shop", TTL: time.Hour, Role: auth.RoleMarketplace})
			require.NoError(t, err)
			r = h.do("PUT", "/v1/tracks/"+id+"/licenses/carol", "", nil, "Authorization", "Bearer "+market)
			require.Equal(t, http.StatusOK, r.status, "body: %s", r.body)
			r.json(t, &lic)
			assert.Equal(t, "marketplace", lic.Source)
			assert.Equal(t, http.StatusNotFound, h.do("PUT", "/v1/tracks/"+id+"/licenses/dave", "bob", nil).status,
				"a stranger cannot grant on a private track")
			assert.Equal(t, http.StatusNoContent, h.do("DELETE", "/v1/tracks/"+id+"/licenses/bob", "alice", nil).status)
			assert.Equal(t, http.StatusNotFound, h.do("DELETE", "/v1/tracks/"+id+"/licenses/bob", "alice", nil).status)

			// Delete: the row goes, the objects go, the CDN is told.
			assert.Equal(t, http.StatusNoContent, h.do("DELETE", "/v1/tracks/"+id, "alice", nil).status)
			assert.Equal(t, http.StatusNotFound, h.do("GET", "/v1/tracks/"+id, "alice", nil).status)
			assert.Empty(t, h.objectKeys(), "a deleted track's objects are removed")
			assert.Contains(t, h.purger.Paths(), wantKey)
			assert.Contains(t, h.purger.Paths(), "hls/"+id+"/")
			assert.Equal(t, http.StatusNotFound, h.do("DELETE", "/v1/tracks/"+id, "alice", nil).status)
		})
	}
}

// What follows an ID3v2 tag decides the format, however long the tag:
// ffmpeg's ADTS muxer tags AAC files, which are not MP3.
func TestUploadSniffsPastAnID3Tag(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	audio := audioFixture(t, "tagged.aac")
	require.True(t, bytes.HasPrefix(audio, []byte("ID3")))
	require.Greater(t, catalog.SniffWant(audio[:catalog.SniffLen]), catalog.SniffLen, "the tag outlasts the first read")

	tr := h.createTrack("alice", "public", 0)
	r := h.upload("alice", tr.ID.String(), audio)
	require.Equal(t, http.StatusOK, r.status, "body: %s", r.body)
	r.json(t, &tr)
	assert.Equal(t, "audio/aac", *tr.ContentType)
	assert.True(t, strings.HasSuffix(*tr.ObjectKey, ".aac"), *tr.ObjectKey)
	sum := sha256.Sum256(audio)
	assert.Equal(t, hex.EncodeToString(sum[:]), *tr.SHA256, "the bytes read to sniff are stored too")
	assert.EqualValues(t, len(audio), *tr.SizeBytes)
}

func TestReplacingAudio(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	tr := h.createTrack("alice", "public", 0)
	id := tr.ID.String()
	require.Equal(t, http.StatusOK, h.upload("alice", id, audioFixture(t, "tone.mp3")).status)
	first := h.objectKeys()
	require.Len(t, first, 1)

	// The same bytes again: same key, nothing deleted.
	require.Equal(t, http.StatusOK, h.upload("alice", id, audioFixture(t, "tone.mp3")).status)
	assert.Equal(t, first, h.objectKeys())

	// New bytes: the new key replaces the old one, which is purged.
	r := h.upload("alice", id, audioFixture(t, "other.mp3"))
	require.Equal(t, http.StatusOK, r.status)
	var updated catalog.Track
	r.json(t, &updated)
	assert.Equal(t, []string{*updated.ObjectKey}, h.objectKeys())
	assert.NotEqual(t, first[0], *updated.ObjectKey)
	assert.Contains(t, h.purger.Paths(), first[0])
}

// Uploads hold memory until they end (an S3 upload buffers its parts), so
// one beyond UPLOAD_CONCURRENCY is refused before its body is read, with a
// 503 and Retry-After; the slot is free again when an upload ends.
func TestUploadsBeyondTheLimitAreRefused(t *testing.T) {
	h := newHarness(t, harnessOptions{uploadSlots: 1})
	audio := audioFixture(t, "long.wav")
	first, second := h.createTrack("alice", "public", 0), h.createTrack("alice", "public", 0)

	body, sending := io.Pipe()
	done := make(chan response, 1)
	go func() {
		done <- h.do("PUT", "/v1/tracks/"+first.ID.String()+"/audio", "alice", body, "Content-Type", "audio/wav")
	}()
	_, err := sending.Write(audio[:len(audio)/2])
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return strings.Contains(string(h.do("GET", "/metrics", "", nil).body), "playgate_api_uploads_in_progress 1")
	}, 5*time.Second, 10*time.Millisecond, "the first upload holds the only slot")

	r := h.upload("alice", second.ID.String(), audio)
	assert.Equal(t, "too-many-uploads", r.problemType(t))
	assert.Equal(t, http.StatusServiceUnavailable, r.status)
	assert.Equal(t, "10", r.header.Get("Retry-After"))

	_, err = sending.Write(audio[len(audio)/2:])
	require.NoError(t, err)
	require.NoError(t, sending.Close())
	assert.Equal(t, http.StatusOK, (<-done).status, "the upload that held the slot completes")
	assert.Equal(t, http.StatusOK, h.upload("alice", second.ID.String(), audio).status, "and frees it")
	var cur catalog.Track
	h.do("GET", "/v1/tracks/"+second.ID.String(), "alice", nil).json(t, &cur)
	require.NotNil(t, cur.ObjectKey, "the refused upload left nothing, the retried one its audio")
}

// Uploads that finish together do not deadlock the database pool: the
// lock on a track's audio and the writes under it share one connection.
func TestConcurrentUploadsShareASmallPool(t *testing.T) {
	h := newHarness(t, harnessOptions{poolMaxConns: 2})
	audio := audioFixture(t, "tone.mp3")
	tracks := make([]catalog.Track, 6)
	for i := range tracks {
		tracks[i] = h.createTrack("alice", "public", 0)
	}
	statuses := make([]int, len(tracks))
	var wg sync.WaitGroup
	for i, tr := range tracks {
		wg.Go(func() { statuses[i] = h.upload("alice", tr.ID.String(), audio).status })
	}
	wg.Wait()
	for i, s := range statuses {
		assert.Equal(t, http.StatusOK, s, "upload %d", i)
	}
}

// Two uploads of the same bytes race: one wins, the other gets 409, and
// the object the winner's row points at survives the loser's clean-up.
func TestConcurrentUploadsOfSameBytes(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	audio := audioFixture(t, "long.wav")
	for round := 0; round < 5; round++ {
		tr := h.createTrack("alice", "public", 0)
		var wg sync.WaitGroup
		statuses := make([]int, 2)
		for i := range statuses {
			wg.Add(1)
			go func() {
				defer wg.Done()
				statuses[i] = h.upload("alice", tr.ID.String(), audio).status
			}()
		}
		wg.Wait()
		assert.Contains(t, statuses, http.StatusOK)
		for _, s := range statuses {
			assert.Contains(t, []int{http.StatusOK, http.StatusConflict}, s)
		}
		var cur catalog.Track
		h.do("GET", "/v1/tracks/"+tr.ID.String(), "alice", nil).json(t, &cur)
		require.NotNil(t, cur.ObjectKey)
		_, err := h.backend.Stat(context.Background(), *cur.ObjectKey)
		assert.NoError(t, err, "round %d: the row's object exists", round)
	}
}

func TestErrors(t *testing.T) {
	h := newHarness(t, harnessOptions{uploadMaxBytes: 100_000})
	private := h.createTrack("alice", "private", 0).ID.String()
	public := h.createTrack("alice", "public", 0).ID.String()
	unknown := "0190a0b4-0000-7000-8000-00000000beef"
	expired, err := auth.Mint(secret, auth.MintOptions{Subject: "alice", TTL: time.Second, Now: time.Now().Add(-time.Hour)})
	require.NoError(t, err)
	forged, err := auth.Mint([]byte("some-other-secret-some-other-secret!"), auth.MintOptions{Subject: "alice", TTL: time.Hour})
	require.NoError(t, err)
	bigJSON := `{"title":"` + strings.Repeat("x", 70_000) + `"}`

	for _, c := range []struct {
		name, method, path, user, body string
		header                         []string
		status                         int
		typ                            string
	}{
		{"malformed id", "GET", "/v1/tracks/not-a-uuid", "", "", nil, 400, "invalid-id"},
		{"non-canonical id", "GET", "/v1/tracks/{" + unknown + "}", "", "", nil, 400, "invalid-id"},
		{"unknown id", "GET", "/v1/tracks/" + unknown, "", "", nil, 404, "not-found"},
		{"private of another", "GET", "/v1/tracks/" + private, "bob", "", nil, 404, "not-found"},
		{"unknown route", "GET", "/v2/nothing", "", "", nil, 404, "not-found"},
		{"wrong method", "POST", "/v1/tracks/" + public, "alice", "", nil, 405, "method-not-allowed"},
		{"create without token", "POST", "/v1/tracks", "", `{}`, []string{"Content-Type", "application/json"}, 401, "unauthorized"},
		{"expired token", "POST", "/v1/tracks", "", `{}`, []string{"Content-Type", "application/json", "Authorization", "Bearer " + expired}, 401, "unauthorized"},
		{"forged token", "POST", "/v1/tracks", "", `{}`, []string{"Content-Type", "application/json", "Authorization", "Bearer " + forged}, 401, "unauthorized"},
		{"bad token on a read", "GET", "/v1/tracks/" + public, "", "", []string{"Authorization", "Bearer nope"}, 401, "unauthorized"},
		{"unknown JSON field", "POST", "/v1/tracks", "alice", `{"title":"t","artist":"a","visibility":"public","colour":"red"}`, []string{"Content-Type", "application/json"}, 400, "invalid-body"},
		{"trailing JSON", "POST", "/v1/tracks", "alice", `{"title":"t","artist":"a","visibility":"public"} {}`, []string{"Content-Type", "application/json"}, 400, "invalid-body"},
		{"invalid values", "POST", "/v1/tracks", "alice", `{"title":"","artist":"a","visibility":"secret","price_cents":-1}`, []string{"Content-Type", "application/json"}, 400, "invalid-body"},
		{"not JSON", "POST", "/v1/tracks", "alice", `title=t`, []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, "unsupported-media-type"},
		{"JSON too large", "POST", "/v1/tracks", "alice", bigJSON, []string{"Content-Type", "application/json"}, 413, "too-large"},
		{"patch of another's public track", "PATCH", "/v1/tracks/" + public, "bob", `{"title":"mine"}`, []string{"Content-Type", "application/json"}, 403, "forbidden"},
		{"patch of another's private track", "PATCH", "/v1/tracks/" + private, "bob", `{"title":"mine"}`, []string{"Content-Type", "application/json"}, 404, "not-found"},
		{"empty patch", "PATCH", "/v1/tracks/" + public, "alice", `{}`, []string{"Content-Type", "application/json"}, 400, "invalid-body"},
		{"weak If-Match", "PATCH", "/v1/tracks/" + public, "alice", `{"title":"x"}`, []string{"Content-Type", "application/json", "If-Match", `W/"1"`}, 412, "precondition-failed"},
		{"upload of text", "PUT", "/v1/tracks/" + public + "/audio", "alice", "this is not audio at all, just text renamed to .mp3", nil, 415, "unsupported-media-type"},
		{"empty upload", "PUT", "/v1/tracks/" + public + "/audio", "alice", "", nil, 400, "invalid-body"},
		{"upload too large", "PUT", "/v1/tracks/" + public + "/audio", "alice", "fLaC" + strings.Repeat("\x00", 100_001), nil, 413, "too-large"},
		{"upload to another's track", "PUT", "/v1/tracks/" + public + "/audio", "bob", "fLaC", nil, 403, "forbidden"},
		{"share with short TTL", "POST", "/v1/tracks/" + public + "/shares", "alice", `{"expires_in":5}`, []string{"Content-Type", "application/json"}, 400, "invalid-body"},
		{"licence for an empty user", "PUT", "/v1/tracks/" + public + "/licenses/%20", "alice", "", nil, 400, "invalid-id"},
		{"licence by a stranger", "PUT", "/v1/tracks/" + public + "/licenses/bob", "bob", "", nil, 403, "forbidden"},
		{"list: bad limit", "GET", "/v1/tracks?limit=1000", "", "", nil, 400, "invalid-parameter"},
		{"list: bad cursor", "GET", "/v1/tracks?cursor=zzz", "", "", nil, 400, "invalid-parameter"},
		{"list: other owner", "GET", "/v1/tracks?owner=bob", "alice", "", nil, 400, "invalid-parameter"},
		{"list mine without token", "GET", "/v1/tracks?owner=me", "", "", nil, 401, "unauthorized"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var body io.Reader
			if c.body != "" {
				body = strings.NewReader(c.body)
			}
			r := h.do(c.method, c.path, c.user, body, c.header...)
			assert.Equal(t, c.status, r.status, "body: %s", r.body)
			assert.Equal(t, c.typ, r.problemType(t))
		})
	}
	assert.Empty(t, h.objectKeys(), "no failed upload leaves an object")
}

// A client that sends part of an upload and disconnects leaves no row
// pointing at bytes and no object behind, on either backend.
func TestAbortedUploadLeavesNothing(t *testing.T) {
	for _, backend := range []string{"local", "s3"} {
		t.Run(backend, func(t *testing.T) {
			h := newHarness(t, harnessOptions{backend: backend})
			tr := h.createTrack("alice", "public", 0)
			audio := audioFixture(t, "long.wav")
			require.Greater(t, len(audio), 600_000)

			u, _ := url.Parse(h.base)
			conn, err := net.Dial("tcp", u.Host)
			require.NoError(t, err)
			fmt.Fprintf(conn, "PUT /v1/tracks/%s/audio HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n",
				tr.ID, h.token("alice"), len(audio))
			_, err = conn.Write(audio[:500_000])
			require.NoError(t, err)
			time.Sleep(100 * time.Millisecond) // let the server start streaming to storage
			conn.Close()

			require.Eventually(t, func() bool { return len(h.objectKeys()) == 0 }, 5*time.Second, 50*time.Millisecond,
				"objects left: %v", h.objectKeys())
			var cur catalog.Track
			h.do("GET", "/v1/tracks/"+tr.ID.String(), "alice", nil).json(t, &cur)
			assert.Nil(t, cur.ObjectKey, "the row points at no bytes")
			assert.Equal(t, tr.Version, cur.Version, "the row did not change")
		})
	}
}

// A chunked upload (no Content-Length) over the limit is refused while
// streaming, and nothing is kept.
func TestChunkedUploadOverLimit(t *testing.T) {
	h := newHarness(t, harnessOptions{uploadMaxBytes: 300_000})
	tr := h.createTrack("alice", "public", 0)
	audio := audioFixture(t, "long.wav")

	// A raw connection: the server answers 413 and closes while the client
	// is still sending, which net/http's client reports as a write error.
	u, _ := url.Parse(h.base)
	conn, err := net.Dial("tcp", u.Host)
	require.NoError(t, err)
	defer conn.Close()
	go func() {
		fmt.Fprintf(conn, "PUT /v1/tracks/%s/audio HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nTransfer-Encoding: chunked\r\n\r\n",
			tr.ID, h.token("alice"))
		for off := 0; off < len(audio); off += 32 << 10 {
			chunk := audio[off:min(off+32<<10, len(audio))]
			if _, err := fmt.Fprintf(conn, "%x\r\n%s\r\n", len(chunk), chunk); err != nil {
				return
			}
		}
		fmt.Fprint(conn, "0\r\n\r\n")
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, header: resp.Header, body: body}
	assert.Equal(t, http.StatusRequestEntityTooLarge, r.status)
	assert.Equal(t, "too-large", r.problemType(t))
	assert.Empty(t, h.objectKeys())

	// Within the limit, a chunked upload works and is measured exactly.
	small := audioFixture(t, "tone.mp3")
	r = h.do("PUT", "/v1/tracks/"+tr.ID.String()+"/audio", "alice", io.MultiReader(bytes.NewReader(small)))
	// (io.MultiReader hides the length, so net/http sends it chunked.)
	require.Equal(t, http.StatusOK, r.status, "body: %s", r.body)
	var cur catalog.Track
	r.json(t, &cur)
	assert.EqualValues(t, len(small), *cur.SizeBytes)
}

func TestPagination(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	var mine []string
	for i := 0; i < 5; i++ {
		mine = append(mine, h.createTrack("alice", []string{"public", "private"}[i%2], 0).ID.String())
	}
	h.createTrack("bob", "public", 0)

	var seen []string
	cursor := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, 5, "pagination must end")
		r := h.do("GET", "/v1/tracks?owner=me&limit=2&cursor="+cursor, "alice", nil)
		require.Equal(t, http.StatusOK, r.status, "body: %s", r.body)
		var page struct {
			Items      []catalog.Track `json:"items"`
			NextCursor *string         `json:"next_cursor"`
		}
		r.json(t, &page)
		assert.LessOrEqual(t, len(page.Items), 2)
		for _, tr := range page.Items {
			assert.Equal(t, "alice", tr.OwnerID)
			seen = append(seen, tr.ID.String())
		}
		if page.NextCursor == nil {
			break
		}
		cursor = *page.NextCursor
	}
	// Newest first, each exactly once.
	want := make([]string, len(mine))
	for i, id := range mine {
		want[len(mine)-1-i] = id
	}
	assert.Equal(t, want, seen)

	var public struct {
		Items []catalog.Track `json:"items"`
	}
	h.do("GET", "/v1/tracks", "", nil).json(t, &public)
	assert.Len(t, public.Items, 4, "3 of alice's and 1 of bob's are public")
	for _, tr := range public.Items {
		assert.Equal(t, catalog.Public, tr.Visibility)
	}
}

// Turning a track private purges it from the CDN.
func TestPrivacyFlipPurges(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	tr := h.createTrack("alice", "public", 0)
	require.Equal(t, http.StatusOK, h.upload("alice", tr.ID.String(), audioFixture(t, "tone.mp3")).status)
	r := h.doJSON("PATCH", "/v1/tracks/"+tr.ID.String(), "alice", map[string]any{"visibility": "private"})
	require.Equal(t, http.StatusOK, r.status)
	assert.Contains(t, h.purger.Paths(), "hls/"+tr.ID.String()+"/")
	assert.Len(t, h.purger.Paths(), 2, "the original and the HLS directory")
}

// Every change through the API notifies the signers with the track id.
func TestChangesNotify(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	ctx := context.Background()
	listener, err := pgx.Connect(ctx, h.dbURL)
	require.NoError(t, err)
	defer listener.Close(ctx)
	_, err = listener.Exec(ctx, "LISTEN playgate_tracks")
	require.NoError(t, err)
	expect := func(what, id string) {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		n, err := listener.WaitForNotification(wctx)
		require.NoError(t, err, "no notification after %s", what)
		assert.Equal(t, id, n.Payload, what)
	}
	tr := h.createTrack("alice", "public", 0)
	id := tr.ID.String()
	expect("create", id)
	require.Equal(t, http.StatusOK, h.upload("alice", id, audioFixture(t, "tone.mp3")).status)
	expect("upload", id)
	require.Equal(t, http.StatusOK, h.doJSON("PATCH", "/v1/tracks/"+id, "alice", map[string]any{"price_cents": 99}).status)
	expect("patch", id)
	require.Equal(t, http.StatusCreated, h.doJSON("POST", "/v1/tracks/"+id+"/shares", "alice", map[string]any{}).status)
	expect("share", id)
	require.Equal(t, http.StatusOK, h.do("PUT", "/v1/tracks/"+id+"/licenses/bob", "alice", nil).status)
	expect("licence", id)
	require.Equal(t, http.StatusNoContent, h.do("DELETE", "/v1/tracks/"+id, "alice", nil).status)
	expect("delete", id)
}

// With DATABASE_READ_URL set, catalogue reads go to the read pool. The
// "replica" here is a separate database holding a row the primary lacks.
func TestReadsUseTheReadPool(t *testing.T) {
	ctx := context.Background()
	replicaURL := pg.NewDatabase(t)
	replica, err := pgxpool.New(ctx, replicaURL)
	require.NoError(t, err)
	defer replica.Close()
	const onlyOnReplica = "0190a0b4-0000-7000-8000-0000000000aa"
	_, err = replica.Exec(ctx, `INSERT INTO tracks (id, owner_id, title, artist, visibility)
		VALUES ($1, 'alice', 'replicated', 'a', 'public')`, onlyOnReplica)
	require.NoError(t, err)

	h := newHarness(t, harnessOptions{readURL: replicaURL})
	r := h.do("GET", "/v1/tracks/"+onlyOnReplica, "", nil)
	require.Equal(t, http.StatusOK, r.status, "a read is served by the read pool")
	var public struct {
		Items []catalog.Track `json:"items"`
	}
	h.do("GET", "/v1/tracks", "", nil).json(t, &public)
	require.Len(t, public.Items, 1)
	assert.Equal(t, "replicated", public.Items[0].Title)

	// Writes go to the primary, which does not have that row.
	r = h.doJSON("PATCH", "/v1/tracks/"+onlyOnReplica, "alice", map[string]any{"title": "x"})
	assert.Equal(t, http.StatusNotFound, r.status)
}

func TestHealthReadyMetrics(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	assert.Equal(t, http.StatusOK, h.do("GET", "/healthz", "", nil).status)
	assert.Equal(t, http.StatusOK, h.do("GET", "/readyz", "", nil).status)
	h.createTrack("alice", "public", 0)
	h.do("GET", "/v1/tracks/nope", "", nil)
	r := h.do("GET", "/metrics", "", nil)
	require.Equal(t, http.StatusOK, r.status)
	assertMetricsWellFormed(t, r.body)
	assert.Contains(t, string(r.body), `playgate_api_requests_total{route="/v1/tracks",status="201"} 1`)
	assert.Contains(t, string(r.body), `playgate_api_requests_total{route="/v1/tracks/{id}",status="400"} 1`)
	assert.Contains(t, string(r.body), `playgate_api_request_duration_seconds_bucket{route="/v1/tracks",le=`)
}

// assertMetricsWellFormed fails on any series exposed twice: the seed
// registered two counters under one name and paniced at start.
func assertMetricsWellFormed(t *testing.T, body []byte) {
	t.Helper()
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		require.Positive(t, i, "line %q", line)
		series := line[:i]
		assert.False(t, seen[series], "series %s exposed twice", series)
		seen[series] = true
		if strings.HasPrefix(series, "playgate_") {
			name, _, _ := strings.Cut(series, "{")
			assert.Regexp(t, `^playgate_[a-z]+_[a-z_]+$`, name)
		}
	}
}

// Two servers in one process each register their metrics on their own
// set: building the second must not panic on a duplicate name.
func TestTwoServersInOneProcess(t *testing.T) {
	a := newHarness(t, harnessOptions{})
	b := newHarness(t, harnessOptions{})
	assert.NotSame(t, a.metrics, b.metrics)
}

// End to end through the real purge queue and Bunny client: deleting a
// track and turning one private reach a fake Bunny API with the
// documented request (POST /purge?url=…, AccessKey).
func TestPurgesReachTheProvider(t *testing.T) {
	var mu sync.Mutex
	var purged []string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/purge" || r.Header.Get("AccessKey") != "bunny-api-key" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		mu.Lock()
		purged = append(purged, r.URL.Query().Get("url"))
		mu.Unlock()
	}))
	defer api.Close()
	set := metrics.NewSet()
	q := purge.NewQueue(purge.QueueConfig{Backoff: 10 * time.Millisecond}, "bunny",
		&purge.Bunny{API: api.URL, ZoneURL: "https://zone.b-cdn.net", Key: "bunny-api-key"},
		slog.New(slog.NewTextHandler(io.Discard, nil)), set)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go q.Run(ctx)

	h := newHarness(t, harnessOptions{purger: q})
	a := h.createTrack("alice", "public", 0)
	require.Equal(t, http.StatusOK, h.upload("alice", a.ID.String(), audioFixture(t, "tone.mp3")).status)
	require.Equal(t, http.StatusOK, h.doJSON("PATCH", "/v1/tracks/"+a.ID.String(), "alice", map[string]any{"visibility": "private"}).status)
	b := h.createTrack("alice", "public", 0)
	require.Equal(t, http.StatusNoContent, h.do("DELETE", "/v1/tracks/"+b.ID.String(), "alice", nil).status)

	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(purged) == 3
	}, 5*time.Second, 10*time.Millisecond, "the fake Bunny API saw three purges")
	mu.Lock()
	defer mu.Unlock()
	assert.Contains(t, purged, "https://zone.b-cdn.net/hls/"+a.ID.String()+"/*")
	assert.Contains(t, purged, "https://zone.b-cdn.net/hls/"+b.ID.String()+"/*")
	assert.Contains(t, strings.Join(purged, " "), "https://zone.b-cdn.net/tracks/"+a.ID.String()+"/")
}

// An upload declared larger than the limit is refused before it is read,
// and the client gets the 413 rather than a reset connection.
func TestTooLargeUploadIsAnswered(t *testing.T) {
	h := newHarness(t, harnessOptions{uploadMaxBytes: 100_000})
	tr := h.createTrack("alice", "public", 0)
	// 200 KB: fasthttp discards the unread rest and keeps the connection.
	// 3 MB: too much to discard, so the connection closes, lingering until
	// the client has stopped sending: a plain close would reset it, and
	// the reset could destroy the answer before the client read it.
	for _, size := range []int{200_000, 3 << 20} {
		body := append([]byte("fLaC"), make([]byte, size)...)
		for i := 0; i < 20; i++ {
			r := h.do("PUT", "/v1/tracks/"+tr.ID.String()+"/audio", "alice", bytes.NewReader(body))
			require.Equal(t, http.StatusRequestEntityTooLarge, r.status, "%d bytes, attempt %d", size, i)
			assert.Equal(t, "too-large", r.problemType(t))
		}
	}
	assert.Empty(t, h.objectKeys())
}

// With the database down, reads and writes answer 503 with Retry-After,
// an outage the client can wait out, not a 500; and they work again
// once it is back.
func TestDatabaseDown(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	tr := h.createTrack("alice", "public", 0)
	restart := pg.Stop(t)
	defer func() { restart() }() // if the test fails before restarting

	for _, r := range []response{
		h.do("GET", "/v1/tracks/"+tr.ID.String(), "", nil),
		h.doJSON("POST", "/v1/tracks", "alice", map[string]any{"title": "T", "artist": "A", "visibility": "public"}),
	} {
		assert.Equal(t, http.StatusServiceUnavailable, r.status, "%s", r.body)
		assert.Equal(t, "unavailable", r.problemType(t))
		assert.Equal(t, "5", r.header.Get("Retry-After"))
	}
	assert.Equal(t, http.StatusServiceUnavailable, h.do("GET", "/readyz", "", nil).status)

	restart()
	restart = func() {}
	require.Eventually(t, func() bool {
		return h.do("GET", "/v1/tracks/"+tr.ID.String(), "", nil).status == http.StatusOK
	}, 15*time.Second, 100*time.Millisecond)
}

// txPurger is a transactional purger (purge.Jobs' shape) that records,
// for each purge, the track's state as its transaction sees it and as
// another connection does, and fails when told to.
type txPurger struct {
	recordingPurger
	outside   *pgxpool.Pool
	objects   func() []string
	fail      bool     // PurgeTx fails
	failLater bool     // PurgeTxAt fails
	seen      []string // "inside/outside" states, one per purge
	later     []string // the paths of purges for later
	track     uuid.UUID
}

// state is the track as q sees it.
func (p *txPurger) state(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) string {
	var vis string
	var deleted bool
	var key *string
	if err := q.QueryRow(ctx, `SELECT visibility, deleted_at IS NOT NULL, object_key FROM tracks WHERE id = $1`, p.track).
		Scan(&vis, &deleted, &key); err != nil {
		return err.Error()
	}
	k := ""
	if key != nil {
		k = path.Base(*key)
	}
	return fmt.Sprintf("%s,deleted=%t,%s", vis, deleted, k)
}

func (p *txPurger) PurgeTx(ctx context.Context, tx pgx.Tx, paths []string) error {
	p.seen = append(p.seen, p.state(ctx, tx)+" / "+p.state(ctx, p.outside))
	if p.fail {
		return errors.New("the job queue refused the insert")
	}
	p.recordingPurger.Purge(ctx, paths)
	return nil
}

func (p *txPurger) PurgeTxAt(ctx context.Context, tx pgx.Tx, paths []string, times ...time.Time) error {
	for _, at := range times {
		if at.IsZero() {
			if err := p.PurgeTx(ctx, tx, paths); err != nil {
				return err
			}
			continue
		}
		p.seen = append(p.seen, fmt.Sprintf("again in %s: %s", time.Until(at).Round(time.Minute), p.state(ctx, tx)))
		if p.failLater {
			return errors.New("the job queue refused the insert")
		}
		p.later = append(p.later, paths...)
	}
	return nil
}

// Purge records a purge made outside any transaction, with how many of
// the track's objects storage still held when it was asked for.
func (p *txPurger) Purge(ctx context.Context, paths []string) {
	held := 0
	for _, k := range p.objects() {
		held += strings.Count(k, p.track.String())
	}
	p.seen = append(p.seen, fmt.Sprintf("after the write, %d objects left", held))
	p.recordingPurger.Purge(ctx, paths)
}

// With purges kept in PostgreSQL, each is queued in the transaction of
// the write that causes it: it sees the write, which no one else sees
// yet, and a purge that cannot be queued undoes the write.
func TestPurgesCommitWithTheirWrite(t *testing.T) {
	p := &txPurger{}
	h, id := newPurgedTrack(t, p)
	first := path.Base(h.objectKeys()[0])
	other := audioFixture(t, "other.mp3")
	sum := sha256.Sum256(other)
	second := hex.EncodeToString(sum[:]) + ".mp3"

	for _, step := range []struct {
		name   string
		do     func() response
		status int
		seen   []string // the track inside the write / outside it, then purges after it
	}{
		{"turned private", func() response {
			return h.doJSON("PATCH", "/v1/tracks/"+id, "alice", map[string]any{"visibility": "private"})
		}, http.StatusOK, []string{"private,deleted=false," + first + " / public,deleted=false," + first}},
		{"new audio", func() response { return h.upload("alice", id, other) },
			http.StatusOK, []string{"private,deleted=false," + second + " / private,deleted=false," + first}},
		{"deleted", func() response { return h.do("DELETE", "/v1/tracks/"+id, "alice", nil) },
			http.StatusNoContent, []string{"private,deleted=true," + second + " / private,deleted=false," + second,
				// Once no URL signed before the delete works, whatever
				// refilled the edge meanwhile goes, crash or not.
				"again in 1h0m0s: private,deleted=true," + second,
				// The objects are gone, and a player could have refilled
				// the edge from the origin since the first purge.
				"after the write, 0 objects left"}},
	} {
		before, keys := h.do("GET", "/v1/tracks/"+id, "alice", nil).body, h.objectKeys()
		p.fail, p.seen = true, nil
		r := step.do()
		assert.GreaterOrEqual(t, r.status, 500, "%s: a purge that cannot be queued fails the write: %s", step.name, r.body)
		assert.Len(t, p.seen, 1, step.name)
		assert.JSONEq(t, string(before), string(h.do("GET", "/v1/tracks/"+id, "alice", nil).body), "%s: undone", step.name)
		assert.Equal(t, keys, h.objectKeys(), "%s: the objects are as they were", step.name)

		p.fail, p.seen = false, nil
		r = step.do()
		require.Equal(t, step.status, r.status, "%s: %s", step.name, r.body)
		assert.Equal(t, step.seen, p.seen, step.name)
	}
	assert.Equal(t, []string{"tracks/" + id + "/" + first, "hls/" + id + "/", "tracks/" + id + "/" + first,
		"tracks/" + id + "/" + second, "hls/" + id + "/", "tracks/" + id + "/" + second, "hls/" + id + "/"}, p.Paths(),
		"the private track's original and packages, its replaced original, then the deleted track's, twice")
	assert.Equal(t, []string{"tracks/" + id + "/" + second, "hls/" + id + "/"}, p.later, "the deleted track's, once more later")
}

// A delete whose later purge cannot be queued does not happen: the
// track and its objects stay as they were, and the client may retry.
func TestDeleteWithoutItsLaterPurgeIsUndone(t *testing.T) {
	p := &txPurger{failLater: true}
	h, id := newPurgedTrack(t, p)
	keys := h.objectKeys()

	r := h.do("DELETE", "/v1/tracks/"+id, "alice", nil)
	assert.GreaterOrEqual(t, r.status, 500, "%s", r.body)
	assert.Equal(t, http.StatusOK, h.do("GET", "/v1/tracks/"+id, "alice", nil).status, "still there")
	assert.Equal(t, keys, h.objectKeys(), "the objects too")
	assert.Empty(t, p.later)

	p.failLater = false
	require.Equal(t, http.StatusNoContent, h.do("DELETE", "/v1/tracks/"+id, "alice", nil).status)
	assert.Equal(t, http.StatusNotFound, h.do("GET", "/v1/tracks/"+id, "alice", nil).status)
	assert.Len(t, p.later, 2, "the original and the packages")
}

// newPurgedTrack is a harness purging through p (PurgeAgainAfter an
// hour) and alice's public track in it, with audio.
func newPurgedTrack(t *testing.T, p *txPurger) (*harness, string) {
	t.Helper()
	h := newHarness(t, harnessOptions{purger: p, purgeAgain: time.Hour})
	p.outside, p.objects = h.primary, h.objectKeys
	tr := h.createTrack("alice", "public", 0)
	p.track = tr.ID
	id := tr.ID.String()
	require.Equal(t, http.StatusOK, h.upload("alice", id, audioFixture(t, "tone.mp3")).status)
	return h, id
}
