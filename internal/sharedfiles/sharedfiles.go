// Package sharedfiles locates the project's read-only shared material
// (the spec, the CDN test vectors made by the providers' own code) for
// tests: ../shared beside the repository, as the workplace and CI lay it
// out, or $PLAYGATE_SHARED_DIR.
package sharedfiles

import (
	"os"
	"path/filepath"
	"testing"
)

// Path returns the path of name inside the shared folder, failing the
// test with where it looked when the file is not there.
func Path(t testing.TB, name string) string {
	t.Helper()
	dir := os.Getenv("PLAYGATE_SHARED_DIR")
	if dir == "" {
		root, err := moduleRoot()
		if err != nil {
			t.Fatalf("sharedfiles: %v", err)
		}
		dir = filepath.Join(root, "..", "shared")
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("sharedfiles: %s is missing: the shared folder is expected beside the repository (or set PLAYGATE_SHARED_DIR): %v", name, err)
	}
	return p
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", os.ErrNotExist
		}
		dir = parent
	}
}
