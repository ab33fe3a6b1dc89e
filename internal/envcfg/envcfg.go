// Package envcfg loads a binary's configuration struct from the
// environment with envconfig and validates it, reporting every problem at
// once, one line each, so an operator fixes them in one pass.
package envcfg

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/kelseyhightower/envconfig"
)

// Validator is implemented by configuration structs.
type Validator interface {
	Validate() error
}

// Load fills cfg from the environment and validates it.
func Load(cfg Validator) error {
	if err := envconfig.Process("", cfg); err != nil {
		return fmt.Errorf("invalid configuration:\n  %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid configuration:\n  %s", strings.ReplaceAll(err.Error(), "\n", "\n  "))
	}
	return nil
}

// Secret reads a value that may be given inline or, for PEM keys and
// other multi-line secrets, as a path to a file holding it.
func Secret(name, value string) ([]byte, error) {
	if value == "" || strings.HasPrefix(strings.TrimSpace(value), "-----BEGIN") {
		return []byte(value), nil
	}
	b, err := os.ReadFile(value)
	if err != nil {
		return nil, fmt.Errorf("%s: not a PEM value and not a readable file: %w", name, errors.Unwrap(err))
	}
	return b, nil
}
