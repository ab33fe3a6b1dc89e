//go:build !linux

package storage

// beneath is Linux's single-call confined open; elsewhere os.Root does
// the work.
type beneath struct{}

func newBeneath(string) *beneath { return nil }

func (*beneath) open(string) (int, fileInfo, bool, error) { return -1, fileInfo{}, false, nil }

func (*beneath) close() {}
