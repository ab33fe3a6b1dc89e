package storage

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// beneath opens files below the root with one openat2(2) call and
// RESOLVE_BENEATH: the kernel refuses any resolution, through ".." or a
// symlink, that leaves the root. os.Root gives the same guarantee by
// opening each path component in turn, which costs two system calls per
// component on every read; on the origin's hot path that was most of its
// system calls (measured with strace under wrk).
type beneath struct {
	dirfd       int
	unsupported atomic.Bool // openat2 missing (Linux < 5.6) or filtered
	kept        *keptFiles  // nil: every open is a new one
	recheck     time.Duration
	start       time.Time
}

func newBeneath(dir string, o localOptions) *beneath {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	b := &beneath{dirfd: fd, recheck: o.recheckKept, start: time.Now()}
	if o.keepOpen > 0 {
		b.kept = &keptFiles{files: make(map[string]*sharedFile, o.keepOpen), max: o.keepOpen}
	}
	return b
}

// open opens key for reading and describes it; ok is false when openat2
// cannot be used and the caller must fall back to os.Root.
func (b *beneath) open(key string) (f *LocalFile, fi fileInfo, ok bool, err error) {
	if b == nil || b.unsupported.Load() {
		return nil, fileInfo{}, false, nil
	}
	if b.kept != nil {
		if sf := b.kept.get(key); sf != nil {
			if b.current(sf) {
				return &LocalFile{fd: sf.fd, shared: sf, reused: true}, sf.info, true, nil
			}
			b.kept.drop(key, sf)
			sf.release()
		}
	}
	how := unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOCTTY,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
	}
	for {
		fd, err := unix.Openat2(b.dirfd, key, &how)
		switch {
		case err == nil:
			fi, _, err := fstat(fd)
			if err != nil {
				unix.Close(fd)
				return nil, fileInfo{}, true, &os.PathError{Op: "fstat", Path: key, Err: err}
			}
			if b.kept == nil || !fi.regular {
				return &LocalFile{fd: fd}, fi, true, nil
			}
			sf := &sharedFile{fd: fd, info: fi, obj: fileObject(key, fi)}
			sf.refs.Store(1) // this read's
			sf.checked.Store(int64(time.Since(b.start)))
			b.kept.put(key, sf)
			return &LocalFile{fd: fd, shared: sf}, fi, true, nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EPERM):
			// ENOSYS: Linux < 5.6. EPERM: container runtimes that predate
			// openat2 filter it so. Either way, os.Root from now on.
			b.unsupported.Store(true)
			return nil, fileInfo{}, false, nil
		case errors.Is(err, unix.EXDEV):
			// The path would leave the root.
			return nil, fileInfo{}, true, ErrInvalidKey
		}
		return nil, fileInfo{}, true, &os.PathError{Op: "openat2", Path: key, Err: err}
	}
}

// current reports whether the kept sf still shows its object. Within the
// recheck interval it is trusted: on the hot path the fstat was one
// system call in five. Otherwise one fstat, instead of openat2 and close,
// tells: playgate replaces an object by renaming a new file over it and
// deletes it by unlinking, and either leaves the kept inode with no link.
func (b *beneath) current(sf *sharedFile) bool {
	var now time.Duration
	if b.recheck > 0 {
		now = time.Since(b.start)
		if now-time.Duration(sf.checked.Load()) < b.recheck {
			return true
		}
	}
	fi, links, err := fstat(sf.fd)
	if err != nil || links == 0 || fi != sf.info {
		return false
	}
	sf.checked.Store(int64(now))
	return true
}

func fstat(fd int) (fileInfo, uint64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fileInfo{}, 0, err
	}
	return fileInfo{
		size:    st.Size,
		modTime: time.Unix(st.Mtim.Unix()),
		regular: st.Mode&unix.S_IFMT == unix.S_IFREG,
	}, uint64(st.Nlink), nil
}

// forget drops what is kept for key, which this process has just
// replaced or deleted, so that its next read does not wait for a recheck.
func (b *beneath) forget(key string) {
	if b != nil && b.kept != nil {
		b.kept.drop(key, nil)
	}
}

func (b *beneath) keptCount() int {
	if b == nil || b.kept == nil {
		return 0
	}
	b.kept.mu.Lock()
	defer b.kept.mu.Unlock()
	return len(b.kept.files)
}

func (b *beneath) close() {
	if b != nil {
		unix.Close(b.dirfd)
		b.kept.close()
	}
}

// keptFiles are the descriptors beneath keeps open between reads, as
// nginx's open_file_cache does: a read of a kept object costs one fstat
// instead of openat2, fstat and close. When it is full, a new file takes
// the place of an arbitrary one (Go's map order): objects are read in
// bursts, by the CDN's misses, and a random victim costs no bookkeeping
// on every read, as an LRU's would.
type keptFiles struct {
	mu    sync.Mutex
	files map[string]*sharedFile // each holds one reference for the map
	max   int
}

// get returns key's kept file with a reference for the caller, or nil.
func (k *keptFiles) get(key string) *sharedFile {
	k.mu.Lock()
	defer k.mu.Unlock()
	sf := k.files[key]
	if sf != nil {
		sf.refs.Add(1)
	}
	return sf
}

// put keeps sf for key, in place of what was kept for it before.
func (k *keptFiles) put(key string, sf *sharedFile) {
	sf.refs.Add(1)
	k.mu.Lock()
	defer k.mu.Unlock()
	if old, ok := k.files[key]; ok {
		old.release()
	} else if len(k.files) >= k.max {
		for victim, v := range k.files {
			delete(k.files, victim)
			v.release()
			break
		}
	}
	k.files[key] = sf
}

// drop forgets sf if it is still what is kept for key, or, with sf nil,
// whatever is kept for key.
func (k *keptFiles) drop(key string, sf *sharedFile) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if cur, ok := k.files[key]; ok && (sf == nil || cur == sf) {
		delete(k.files, key)
		cur.release()
	}
}

func (k *keptFiles) close() {
	if k == nil {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for key, sf := range k.files {
		delete(k.files, key)
		sf.release()
	}
}
