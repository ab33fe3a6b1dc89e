//go:build !linux

package storage

import "os"

// beneath is Linux's single-call confined open; elsewhere os.Root does
// the work.
type beneath struct{}

func newBeneath(string) *beneath { return nil }

func (*beneath) open(string) (*os.File, bool, error) { return nil, false, nil }

func (*beneath) close() {}
