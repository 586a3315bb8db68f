//go:build linux

package persist

import (
	"os"
	"path/filepath"
	"testing"
)

// The store's memtable WAL and value log are found in /proc/self/maps and advised, also when
// the data dir is reached through a symlink.
func TestAdviseFindsLogMappings(t *testing.T) {
	real := t.TempDir()
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	s := openT(t, link, nil)
	appendT(t, s, rec("q", "body"))
	if n := adviseRandom(s.mapsDir); n < 2 {
		t.Fatalf("advised %d mappings under %s, want the WAL and the value log", n, s.mapsDir)
	}
}
