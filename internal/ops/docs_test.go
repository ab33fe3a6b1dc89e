package ops

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Operators read what a metric means in the README's Metrics table: a
// metric the code registers and the table does not name is one they
// cannot interpret, so it fails here.
func TestEveryMetricIsDocumented(t *testing.T) {
	root := filepath.Join("..", "..")
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	require.NoError(t, err)
	_, table, ok := strings.Cut(string(readme), "\n## Metrics\n")
	require.True(t, ok, "the README has a Metrics section")
	table, _, _ = strings.Cut(table, "\n## ")
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("`playgate_[a-z_{},]+`").FindAllString(table, -1) {
		for _, name := range expandServices(strings.Trim(m, "`")) {
			documented[name] = true
		}
	}

	// Names as the code spells them: literal, or with the service left
	// to fmt (RequestMetrics), which every service uses.
	name := regexp.MustCompile(`playgate_(?:api|signer|origin|%s)_[a-z_]+`)
	registered := map[string]string{}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "node_modules") && path != root {
			return filepath.SkipDir
		}
		// bench reads the services' metrics; it registers none.
		if d.IsDir() && path == filepath.Join(root, "bench") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range name.FindAllString(string(src), -1) {
			for _, n := range expandServices(strings.ReplaceAll(m, "%s", "{api,signer,origin}")) {
				registered[n] = path
			}
		}
		return nil
	})
	require.NoError(t, err)
	require.NotEmpty(t, registered)
	for n, path := range registered {
		assert.True(t, documented[n], "%s (%s) is not in the README's Metrics table", n, path)
	}
}

// expandServices turns "playgate_{api,signer}_x" into each service's name.
func expandServices(name string) []string {
	open, end := strings.IndexByte(name, '{'), strings.IndexByte(name, '}')
	if open < 0 || end < open {
		return []string{name}
	}
	var names []string
	for _, s := range strings.Split(name[open+1:end], ",") {
		names = append(names, name[:open]+s+name[end+1:])
	}
	return names
}
