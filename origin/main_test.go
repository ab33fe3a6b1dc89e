package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Invalid configuration stops the origin at start with one line per
// problem, and token mode refuses to start without its key.
func TestConfigProblems(t *testing.T) {
	for _, c := range []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"token mode without a key", map[string]string{}, []string{"ORIGIN_AUTH=token needs ORIGIN_TOKEN_KEY"}},
		{"header mode without a secret", map[string]string{"ORIGIN_AUTH": "header"}, []string{"ORIGIN_SECRET"}},
		{"unknown auth and backends", map[string]string{"ORIGIN_AUTH": "maybe", "TRACK_STORAGE_BACKEND": "tape", "ORIGIN_FALLBACK_BACKEND": "s3"},
			[]string{"TRACK_STORAGE_BACKEND must be local or s3", "the s3 backend needs S3_BUCKET"}},
		{"fallback equal to primary", map[string]string{"ORIGIN_TOKEN_KEY": "0123456789abcdef0", "ORIGIN_FALLBACK_BACKEND": "local"},
			[]string{"ORIGIN_FALLBACK_BACKEND must differ"}},
		{"negative open files", map[string]string{"ORIGIN_TOKEN_KEY": "0123456789abcdef0", "ORIGIN_OPEN_FILES": "-1"},
			[]string{"ORIGIN_OPEN_FILES must be 0"}},
		{"negative open files validity", map[string]string{"ORIGIN_TOKEN_KEY": "0123456789abcdef0", "ORIGIN_OPEN_FILES_VALID": "-1s"},
			[]string{"ORIGIN_OPEN_FILES_VALID must be 0"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			t.Setenv("STORAGE_DIR", t.TempDir())
			err := run(context.Background(), &bytes.Buffer{})
			require.Error(t, err)
			for _, w := range c.want {
				assert.Contains(t, err.Error(), w)
			}
			assert.True(t, strings.HasPrefix(err.Error(), "invalid configuration") || strings.Contains(err.Error(), "ORIGIN_"), err.Error())
		})
	}
}

// A CDN in front defaults the origin to the shared-secret header.
func TestAuthDefaults(t *testing.T) {
	assert.Equal(t, "token", string((&Config{}).auth()))
	assert.Equal(t, "header", string((&Config{CDNEnabled: true}).auth()))
	assert.Equal(t, "none", string((&Config{Auth: "none", CDNEnabled: true}).auth()))
}
