// Package pgtest gives test packages a real PostgreSQL server: one
// throw-away cluster per test package (started in TestMain), and a fresh,
// fully migrated database per test cloned from a template in milliseconds.
//
// Usage:
//
//	var pg *pgtest.Server
//
//	func TestMain(m *testing.M) { pgtest.Main(m, &pg) }
//
//	func TestSomething(t *testing.T) {
//		url := pg.NewDatabase(t) // dropped when t ends
//	}
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/playgate/playgate/api/schema"
	"github.com/playgate/playgate/internal/pgcluster"
)

const templateDB = "playgate_template"

// Server is a running cluster whose template database holds the current
// schema.
type Server struct {
	cluster *pgcluster.Cluster
}

// Main starts a cluster, migrates the template, runs the package's tests
// and stops the cluster. It exits the process with the tests' code. A
// machine without the server binaries fails the package with a message
// saying how to install them: the suite never silently skips.
func Main(m *testing.M, srv **Server) {
	os.Exit(Run(m, srv))
}

// Run is Main for packages with more to clean up: it returns the exit
// code instead of exiting.
func Run(m *testing.M, srv **Server) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	cluster, stop, err := pgcluster.StartTemp(ctx)
	if err != nil {
		cancel()
		fmt.Fprintf(os.Stderr, "pgtest: cannot start PostgreSQL: %v\n", err)
		return 1
	}
	defer stop()
	err = createTemplate(ctx, cluster)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		return 1
	}
	*srv = &Server{cluster: cluster}
	return m.Run()
}

func createTemplate(ctx context.Context, c *pgcluster.Cluster) error {
	admin, err := pgx.Connect(ctx, c.AdminURL())
	if err != nil {
		return fmt.Errorf("cannot connect: %w", err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+templateDB); err != nil {
		return fmt.Errorf("cannot create the template database: %w", err)
	}
	conn, err := pgx.Connect(ctx, c.URL(templateDB))
	if err != nil {
		return fmt.Errorf("cannot connect to the template: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := schema.Migrate(ctx, conn); err != nil {
		return err
	}
	return nil
}

// NewDatabase creates a database with every migration applied and
// returns its URL. It is dropped when the test ends.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	name := s.CreateDatabase(t, templateDB)
	return s.cluster.URL(name)
}

// NewEmptyDatabase creates a database with no schema at all (to test
// migrations themselves) and returns its URL.
func (s *Server) NewEmptyDatabase(t testing.TB) string {
	t.Helper()
	return s.cluster.URL(s.CreateDatabase(t, "template0"))
}

// CreateDatabase clones template into a new randomly named database,
// dropped when the test ends, and returns its name.
func (s *Server) CreateDatabase(t testing.TB, template string) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "t_" + hex.EncodeToString(b[:])
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, s.cluster.AdminURL())
	if err != nil {
		t.Fatalf("pgtest: cannot connect: %v", err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", name, template)); err != nil {
		t.Fatalf("pgtest: cannot create database: %v", err)
	}
	t.Cleanup(func() {
		admin, err := pgx.Connect(ctx, s.cluster.AdminURL())
		if err != nil {
			t.Logf("pgtest: cannot drop %s: %v", name, err)
			return
		}
		defer admin.Close(ctx)
		if _, err := admin.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			t.Logf("pgtest: cannot drop %s: %v", name, err)
		}
	})
	return name
}

// Stop stops the server for a while (to test behaviour with the database
// down) and returns a function that starts it again on the same port.
func (s *Server) Stop(t testing.TB) (restart func()) {
	t.Helper()
	ctx := context.Background()
	if err := s.cluster.Stop(ctx); err != nil {
		t.Fatalf("pgtest: cannot stop the server: %v", err)
	}
	return func() {
		if err := s.cluster.Start(ctx); err != nil {
			t.Fatalf("pgtest: cannot restart the server: %v", err)
		}
	}
}
