// Package systemd holds playgate's systemd units and their test.
package systemd

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// systemd-analyze verifies every unit; the binaries are not installed on
// a build machine, so ExecStart points at /bin/true in a copy.
func TestUnitsVerify(t *testing.T) {
	bin, err := exec.LookPath("systemd-analyze")
	require.NoError(t, err, "systemd-analyze is needed (apt-get install -y systemd)")
	units, err := filepath.Glob("*.service")
	require.NoError(t, err)
	require.Len(t, units, 4)
	dir := t.TempDir()
	exe := regexp.MustCompile(`(?m)^ExecStart=\S+`)
	for _, u := range units {
		b, err := os.ReadFile(u)
		require.NoError(t, err)
		s := string(b)
		for _, want := range []string{"DynamicUser=yes", "ProtectSystem=strict", "NoNewPrivileges=yes", "EnvironmentFile=/etc/playgate/env"} {
			assert.Contains(t, s, want, u)
		}
		require.NoError(t, os.WriteFile(filepath.Join(dir, u), []byte(exe.ReplaceAllString(s, "ExecStart=/bin/true")), 0o644))
	}
	for _, u := range units {
		out, err := exec.Command(bin, "verify", filepath.Join(dir, u)).CombinedOutput()
		// Only lines about this unit count; the host's own units may warn.
		var ours []string
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, u) {
				ours = append(ours, l)
			}
		}
		assert.NoError(t, err, "%s: %s", u, out)
		assert.Empty(t, ours, "%s: %s", u, out)
	}
}
