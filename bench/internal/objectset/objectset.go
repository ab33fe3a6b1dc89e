// Package objectset lays out the objects the origin's benchmarks read
// (SPEC §12): HLS segments of about 100 KB and a 10 MiB original, named
// by their content hashes as playgate stores them, readable by all (the
// nginx ceiling's workers run as nobody).
package objectset

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
)

// TrackID is the track the objects belong to.
const TrackID = "0190a0b4-0000-7000-8000-000000000001"

// OriginalSize is the original's size: 1 MiB ranges of it are the
// origin's second workload.
const OriginalSize = 10 << 20

// Set is what Write laid out, as URL paths.
type Set struct {
	Segments []string
	Original string
}

// Write lays out 50 segments (90,000 to 109,600 bytes of random data)
// and the original below root.
func Write(root string) (Set, error) {
	var s Set
	for i := 0; i < 50; i++ {
		data := make([]byte, 90_000+i*400)
		_, _ = rand.Read(data)
		sum := sha256.Sum256(data)
		key := fmt.Sprintf("hls/%s/p1/128k/%s.m4s", TrackID, hex.EncodeToString(sum[:16]))
		if err := writeFile(root, key, data); err != nil {
			return Set{}, err
		}
		s.Segments = append(s.Segments, "/"+key)
	}
	data := make([]byte, OriginalSize)
	_, _ = rand.Read(data)
	sum := sha256.Sum256(data)
	key := "tracks/" + TrackID + "/" + hex.EncodeToString(sum[:]) + ".mp3"
	s.Original = "/" + key
	return s, writeFile(root, key, data)
}

func writeFile(root, key string, data []byte) error {
	p := filepath.Join(root, filepath.FromSlash(key))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, data, 0o644)
}
