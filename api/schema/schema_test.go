package schema_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/playgate/playgate/api/schema"
	"github.com/playgate/playgate/internal/pgtest"
)

var pg *pgtest.Server

func TestMain(m *testing.M) { pgtest.Main(m, &pg) }

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestMigrateIsIdempotent(t *testing.T) {
	ctx := context.Background()
	conn := connect(t, pg.NewEmptyDatabase(t))

	all, err := schema.Migrations()
	require.NoError(t, err)
	require.NotEmpty(t, all)

	applied, err := schema.Migrate(ctx, conn)
	require.NoError(t, err)
	for _, m := range all {
		assert.Contains(t, applied, m.Name, "a fresh database gets every migration")
	}
	assert.Contains(t, strings.Join(applied, " "), "river_", "and the job queue's")

	applied, err = schema.Migrate(ctx, conn)
	require.NoError(t, err)
	assert.Empty(t, applied, "a second run applies nothing")

	var n int
	require.NoError(t, conn.QueryRow(ctx, "SELECT count(*) FROM schema_migrations").Scan(&n))
	assert.Equal(t, len(all), n)
}

func TestConcurrentMigratorsApplyEachOnce(t *testing.T) {
	ctx := context.Background()
	url := pg.NewEmptyDatabase(t)
	const runners = 4
	results := make(chan []string, runners)
	errs := make(chan error, runners)
	for range runners {
		go func() {
			conn, err := pgx.Connect(ctx, url)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close(ctx)
			applied, err := schema.Migrate(ctx, conn)
			errs <- err
			results <- applied
		}()
	}
	var names []string
	for range runners {
		require.NoError(t, <-errs)
	}
	for range runners {
		names = append(names, <-results...)
	}
	all, _ := schema.Migrations()
	for _, m := range all {
		n := 0
		for _, name := range names {
			if name == m.Name {
				n++
			}
		}
		assert.Equal(t, 1, n, "%s is applied by exactly one runner", m.Name)
	}
}

func TestVersionBumpsOnEveryUpdate(t *testing.T) {
	ctx := context.Background()
	conn := connect(t, pg.NewDatabase(t))
	_, err := conn.Exec(ctx, `INSERT INTO tracks (id, owner_id, title, artist, visibility)
		VALUES ('0190a0b4-0000-7000-8000-000000000001', 'alice', 't', 'a', 'public')`)
	require.NoError(t, err)
	for want := int64(2); want <= 3; want++ {
		var v int64
		require.NoError(t, conn.QueryRow(ctx, `UPDATE tracks SET title = title || 'x' RETURNING version`).Scan(&v))
		assert.Equal(t, want, v)
	}
}

// Every change to a track, share link or licence notifies the signers with
// the track id, and only when the change commits.
func TestNotifyOnEveryChange(t *testing.T) {
	ctx := context.Background()
	url := pg.NewDatabase(t)
	listener := connect(t, url)
	_, err := listener.Exec(ctx, "LISTEN playgate_tracks")
	require.NoError(t, err)
	writer := connect(t, url)

	const id = "0190a0b4-0000-7000-8000-000000000002"
	expect := func(t *testing.T, stmt string) {
		t.Helper()
		_, err := writer.Exec(ctx, stmt)
		require.NoError(t, err, stmt)
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		n, err := listener.WaitForNotification(wctx)
		require.NoError(t, err, "no notification after %q", stmt)
		assert.Equal(t, "playgate_tracks", n.Channel)
		assert.Equal(t, id, n.Payload, stmt)
	}
	for _, stmt := range []string{
		`INSERT INTO tracks (id, owner_id, title, artist, visibility) VALUES ('` + id + `', 'alice', 't', 'a', 'public')`,
		`UPDATE tracks SET visibility = 'private' WHERE id = '` + id + `'`,
		`INSERT INTO share_links (id, track_id, token_hash, created_by, expires_at)
		   VALUES (gen_random_uuid(), '` + id + `', sha256('x'), 'alice', now() + interval '1 day')`,
		`UPDATE share_links SET revoked_at = now()`,
		`INSERT INTO licenses (user_id, track_id, source) VALUES ('bob', '` + id + `', 'marketplace')`,
		`UPDATE licenses SET revoked_at = now()`,
		`DELETE FROM licenses`,
	} {
		expect(t, stmt)
	}

	// A rolled-back change notifies nobody.
	tx, err := writer.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `UPDATE tracks SET title = 'rolled back'`)
	require.NoError(t, err)
	require.NoError(t, tx.Rollback(ctx))
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	_, err = listener.WaitForNotification(wctx)
	assert.Error(t, err, "a rolled-back change must not notify")
}

func TestAudioColumnsAreAllOrNothing(t *testing.T) {
	ctx := context.Background()
	conn := connect(t, pg.NewDatabase(t))
	_, err := conn.Exec(ctx, `INSERT INTO tracks (id, owner_id, title, artist, visibility, object_key)
		VALUES (gen_random_uuid(), 'alice', 't', 'a', 'public', 'tracks/x/y.mp3')`)
	assert.ErrorContains(t, err, "tracks_audio_complete")
}
