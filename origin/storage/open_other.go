//go:build !linux

package storage

// beneath is Linux's single-call confined open; elsewhere os.Root does
// the work.
type beneath struct{}

func newBeneath(string, localOptions) *beneath { return nil }

func (*beneath) open(string) (*LocalFile, fileInfo, bool, error) { return nil, fileInfo{}, false, nil }

func (*beneath) forget(string) {}

func (*beneath) keptCount() int { return 0 }

func (*beneath) close() {}
