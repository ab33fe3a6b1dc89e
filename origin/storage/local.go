package storage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// Local stores objects as files below a root directory. Every file
// operation goes through an os.Root, so neither a key nor a symlink can
// reach outside the directory, whatever ValidateKey might miss.
type Local struct {
	root    *os.Root
	beneath *beneath // Linux: confined opens in one system call
}

// LocalOption configures a Local.
type LocalOption func(*localOptions)

type localOptions struct {
	keepOpen    int
	recheckKept time.Duration
}

// KeepOpen keeps up to n descriptors of recently read objects open for
// the next reads of the same keys, as nginx's open_file_cache does (Linux
// only; 0, the default, keeps none). Reuses check the file's status, at
// most every RecheckKeptAfter, so a deleted or replaced object stops being
// served from a kept descriptor.
func KeepOpen(n int) LocalOption { return func(o *localOptions) { o.keepOpen = n } }

// RecheckKeptAfter lets a kept descriptor be reused without a new look at
// the file's status for d after the last one, as nginx's
// open_file_cache_valid does (there 60s). An object another process
// deletes or replaces may then be served for up to d after the change,
// always the whole of the old file, never a mix; this Local's own Put,
// Rename and Delete take effect at once. 0, the default, checks on every
// reuse.
func RecheckKeptAfter(d time.Duration) LocalOption {
	return func(o *localOptions) { o.recheckKept = d }
}

// NewLocal opens (creating it if needed) the directory dir.
func NewLocal(dir string, opts ...LocalOption) (*Local, error) {
	var o localOptions
	for _, opt := range opts {
		opt(&o)
	}
	if dir == "" {
		return nil, errors.New("storage: local backend needs a directory")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("storage: cannot create %s: %w", dir, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("storage: cannot open %s: %w", dir, err)
	}
	return &Local{root: root, beneath: newBeneath(dir, o)}, nil
}

// Name implements Backend.
func (l *Local) Name() string { return "local" }

// Close releases the root directory.
func (l *Local) Close() error {
	l.beneath.close()
	return l.root.Close()
}

// openRead opens key read-only, confined to the root.
func (l *Local) openRead(key string) (*LocalFile, fileInfo, error) {
	if f, fi, ok, err := l.beneath.open(key); ok {
		return f, fi, err
	}
	f, err := l.root.Open(key)
	if err != nil {
		return nil, fileInfo{}, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fileInfo{}, err
	}
	return &LocalFile{fd: int(f.Fd()), owner: f}, infoOf(st), nil
}

// Dir is the root directory's path.
func (l *Local) Dir() string { return l.root.Name() }

// Kept is how many descriptors are kept open now (KeepOpen).
func (l *Local) Kept() int { return l.beneath.keptCount() }

// LocalFile is what Local.Open returns: a section of an open file. It
// reads with pread(2) at an offset of its own and exposes its descriptor,
// so that a server can hand the section to sendfile(2). It is no *os.File
// because on the origin's hot path what os.NewFile adds (a fcntl(2), a
// cleanup) and a seek to the section cost more than the object's bytes
// are worth to Go.
type LocalFile struct {
	fd     int
	owner  *os.File    // set when the os.Root fallback opened fd: it closes it
	shared *sharedFile // set when fd is kept open for other reads too
	reused bool        // fd was kept from an earlier read
	off, n int64       // the section still to read
	size   int64
}

// Reused reports whether the file's descriptor was kept open from an
// earlier read (KeepOpen) rather than opened for this one.
func (f *LocalFile) Reused() bool { return f.reused }

// sharedFile is a descriptor that several LocalFiles read at once, each at
// its own offsets, and that Local may keep for later ones. It is closed
// when the last of them lets it go.
type sharedFile struct {
	fd   int
	info fileInfo
	obj  Object // described once, for every read of it
	refs atomic.Int32
	// checked is when the file's status was last looked at, as a
	// duration since its beneath's start (monotonic, and one atomic word).
	checked atomic.Int64
}

func (s *sharedFile) release() {
	if s.refs.Add(-1) == 0 {
		_ = syscall.Close(s.fd)
	}
}

// Section returns the descriptor and the part of the file still to read.
// The descriptor is valid until Close.
func (f *LocalFile) Section() (fd int, offset, length int64) { return f.fd, f.off, f.n }

// Read implements io.Reader over the section.
func (f *LocalFile) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > f.n {
		p = p[:f.n]
	}
	for {
		n, err := syscall.Pread(f.fd, p, f.off)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if n > 0 {
			f.off += int64(n)
			f.n -= int64(n)
		}
		if err != nil {
			return n, fmt.Errorf("storage: %w", err)
		}
		if n == 0 {
			// The file is shorter than when it was opened: objects are only
			// replaced by rename, so something else truncated it.
			return 0, io.ErrUnexpectedEOF
		}
		return n, nil
	}
}

// Close closes the file.
func (f *LocalFile) Close() error {
	if f.fd < 0 {
		return os.ErrClosed
	}
	fd := f.fd
	f.fd = -1
	switch {
	case f.shared != nil:
		f.shared.release()
		return nil
	case f.owner != nil:
		return f.owner.Close()
	}
	return syscall.Close(fd)
}

// OpenFile opens a whole object once: a server can then check
// preconditions against the returned Object and Narrow the file to the
// range it serves.
func (l *Local) OpenFile(key string) (*LocalFile, Object, error) {
	if err := ValidateKey(key); err != nil {
		return nil, Object{}, err
	}
	f, fi, err := l.openRead(key)
	if err != nil {
		return nil, Object{}, mapFSError(err)
	}
	if !fi.regular {
		f.Close()
		return nil, Object{}, ErrNotFound // a directory is not an object
	}
	f.size, f.n = fi.size, fi.size
	if f.shared != nil {
		return f, f.shared.obj, nil
	}
	return f, fileObject(key, fi), nil
}

// Narrow restricts the file to length bytes from offset (length < 0: to
// the end). Call it before reading.
func (f *LocalFile) Narrow(offset, length int64) error {
	if offset < 0 || offset > f.size {
		return fmt.Errorf("storage: offset %d outside a %d-byte object", offset, f.size)
	}
	if length < 0 || offset+length > f.size {
		length = f.size - offset
	}
	f.off, f.n = offset, length
	return nil
}

// Open implements Backend.
func (l *Local) Open(_ context.Context, key string, offset, length int64) (io.ReadCloser, Object, error) {
	f, obj, err := l.OpenFile(key)
	if err != nil {
		return nil, Object{}, err
	}
	if err := f.Narrow(offset, length); err != nil {
		f.Close()
		return nil, Object{}, fmt.Errorf("storage: %s: %w", key, err)
	}
	return f, obj, nil
}

// Stat implements Backend.
func (l *Local) Stat(_ context.Context, key string) (Object, error) {
	f, obj, err := l.OpenFile(key)
	if err != nil {
		return Object{}, err
	}
	f.Close()
	return obj, nil
}

// Put implements Backend: the bytes go to a hidden temporary file in the
// key's directory, are synced, and the file is renamed over the key, so a
// reader sees either the old object or all of the new one.
func (l *Local) Put(ctx context.Context, key string, r io.Reader, _ string) (Object, error) {
	if err := ValidateKey(key); err != nil {
		return Object{}, err
	}
	dir := path.Dir(key)
	tmp, f, err := l.createTemp(dir)
	if err != nil {
		return Object{}, err
	}
	fail := func(err error) (Object, error) {
		f.Close()
		_ = l.root.Remove(tmp)
		return Object{}, err
	}
	if _, err := io.Copy(f, contextReader{ctx, r}); err != nil {
		return fail(fmt.Errorf("storage: cannot write %s: %w", key, err))
	}
	if err := f.Sync(); err != nil {
		return fail(fmt.Errorf("storage: cannot sync %s: %w", key, err))
	}
	if err := f.Close(); err != nil {
		_ = l.root.Remove(tmp)
		return Object{}, fmt.Errorf("storage: cannot close %s: %w", key, err)
	}
	if err := l.root.Rename(tmp, key); err != nil {
		_ = l.root.Remove(tmp)
		return Object{}, fmt.Errorf("storage: cannot commit %s: %w", key, err)
	}
	l.beneath.forget(key)
	l.syncDir(dir)
	return l.Stat(ctx, key)
}

// createTemp creates a new hidden file in dir, creating dir if needed.
func (l *Local) createTemp(dir string) (string, *os.File, error) {
	var suffix [8]byte
	_, _ = rand.Read(suffix[:])
	tmp := path.Join(dir, tempPrefix+hex.EncodeToString(suffix[:]))
	var f *os.File
	err := l.inDir(dir, func() error {
		var err error
		f, err = l.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		return err
	})
	if err != nil {
		return "", nil, fmt.Errorf("storage: cannot create a file in %s: %w", dir, err)
	}
	return tmp, f, nil
}

// inDir runs op, which needs dir, after creating dir. Deletes and Renames
// remove the directories they empty (removeEmptyParents), so a
// concurrent one can take dir, or a parent of it, away between the two
// steps, or within MkdirAll's own: op is then tried again, with dir made
// again, a few times. os.Root's MkdirAll also fails with "file exists"
// when another makes the same directory at the same moment; the next
// try finds it made.
func (l *Local) inDir(dir string, op func() error) error {
	var err error
	for range 8 {
		if err = l.root.MkdirAll(dir, 0o755); err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrExist) {
				continue
			}
			return err
		}
		if err = op(); !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return err
}

// syncDir makes a rename durable. Failure only weakens durability after a
// crash, not correctness now, so it is not reported.
func (l *Local) syncDir(dir string) {
	if d, err := l.root.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// Rename implements Backend.
func (l *Local) Rename(_ context.Context, from, to string) error {
	if err := ValidateKey(from); err != nil {
		return err
	}
	if err := ValidateKey(to); err != nil {
		return err
	}
	// A missing source is tried again too, at no cost worth a check.
	if err := l.inDir(path.Dir(to), func() error { return l.root.Rename(from, to) }); err != nil {
		return mapFSError(err)
	}
	l.beneath.forget(from)
	l.beneath.forget(to)
	l.syncDir(path.Dir(to))
	l.removeEmptyParents(from)
	return nil
}

// Delete implements Backend, and removes directories it leaves empty.
func (l *Local) Delete(_ context.Context, key string) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	if err := l.root.Remove(key); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("storage: cannot delete %s: %w", key, err)
	}
	l.beneath.forget(key)
	l.removeEmptyParents(key)
	return nil
}

func (l *Local) removeEmptyParents(key string) {
	for dir := path.Dir(key); dir != "."; dir = path.Dir(dir) {
		// Remove fails on a directory that is not empty, which ends
		// the walk: exactly the check wanted, without a race.
		if l.root.Remove(dir) != nil {
			return
		}
	}
}

// tempPrefix starts the name of a file Put is writing. ValidateKey
// refuses keys with a segment that starts with a dot, so no key names one.
const tempPrefix = ".tmp-"

// SweepInterrupted implements Sweeper: it removes the temporary files of
// Puts under prefix last written to before cutoff, which a process that
// died mid-Put left, and the directories that leaves empty.
func (l *Local) SweepInterrupted(ctx context.Context, prefix string, cutoff time.Time) (int, error) {
	if err := validatePrefix(prefix); err != nil {
		return 0, err
	}
	var stale []string
	err := l.walk(ctx, prefix, true, func(p string, fi fs.FileInfo) error {
		if strings.HasPrefix(path.Base(p), tempPrefix) && fi.ModTime().Before(cutoff) {
			stale = append(stale, p)
		}
		return nil
	})
	removed := 0
	for _, p := range stale {
		if err := l.root.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return removed, fmt.Errorf("storage: cannot remove %s: %w", p, err)
		}
		removed++
		l.removeEmptyParents(p)
	}
	if err != nil {
		return removed, fmt.Errorf("storage: cannot sweep %q: %w", prefix, err)
	}
	return removed, nil
}

// List implements Backend.
func (l *Local) List(ctx context.Context, prefix string, fn func(Object) error) error {
	if err := validatePrefix(prefix); err != nil {
		return err
	}
	err := l.walk(ctx, prefix, false, func(p string, fi fs.FileInfo) error {
		return fn(fileObject(p, infoOf(fi)))
	})
	if err != nil {
		return fmt.Errorf("storage: cannot list %q: %w", prefix, err)
	}
	return nil
}

// walk calls fn for every regular file whose path starts with prefix, in
// lexical order: the objects, and with hidden the temporary files too.
func (l *Local) walk(ctx context.Context, prefix string, hidden bool, fn func(string, fs.FileInfo) error) error {
	// Walk the deepest directory the prefix names in full; filter the rest.
	start := "."
	if i := strings.LastIndexByte(prefix, '/'); i > 0 {
		start = prefix[:i]
	}
	return fs.WalkDir(l.root.FS(), start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // vanished mid-walk, or the prefix matches nothing
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() {
			if p != start && !strings.HasPrefix(p+"/", prefix) && !strings.HasPrefix(prefix, p+"/") {
				return fs.SkipDir
			}
			return nil
		}
		if (!hidden && strings.HasPrefix(d.Name(), ".")) || !strings.HasPrefix(p, prefix) || !d.Type().IsRegular() {
			return nil // temporary files are not objects
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		return fn(p, fi)
	})
}

// fileInfo is what an object needs of a file's status.
type fileInfo struct {
	size    int64
	modTime time.Time
	regular bool
}

func infoOf(fi fs.FileInfo) fileInfo {
	return fileInfo{size: fi.Size(), modTime: fi.ModTime(), regular: fi.Mode().IsRegular()}
}

func fileObject(key string, fi fileInfo) Object {
	// Like nginx: size and modification time identify a version of a file
	// that is only ever replaced whole, by rename.
	etag := strconv.FormatInt(fi.modTime.UnixNano(), 16) + "-" + strconv.FormatInt(fi.size, 16)
	return Object{Key: key, Size: fi.size, ModTime: fi.modTime, ETag: etag}
}

func mapFSError(err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return ErrNotFound
	}
	return fmt.Errorf("storage: %w", err)
}

// contextReader stops a copy when its context ends (a client that went
// away mid-upload).
type contextReader struct {
	ctx context.Context
	r   io.Reader
}

func (c contextReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
