//go:build linux

package persist

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
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

// dropMapped gives back the pages of Badger's mapped files that writes made resident, and
// the data stays readable.
func TestDropMappedGivesBackPages(t *testing.T) {
	s := openT(t, "", func(o *Options) { o.dropEvery = -1 })
	body := make([]byte, 64<<10) // value log
	for i := range body {
		body[i] = byte(i)
	}
	var ids []string
	for range 256 { // 16 MiB
		ids = append(ids, appendT(t, s, &Record{Queue: "q", Body: body}).ID)
	}
	before := rssFileKiB(t)
	if n := dropMapped(s.mapsDir); n == 0 {
		t.Fatal("no mapping dropped")
	}
	after := rssFileKiB(t)
	t.Logf("RssFile %d KiB before, %d KiB after", before, after)
	if before-after < 8<<10 {
		t.Errorf("RssFile %d KiB before, %d KiB after the drop: want at least 8 MiB given back", before, after)
	}
	for _, id := range []string{ids[0], ids[len(ids)-1]} {
		r, err := s.Get(id)
		if err != nil || len(r.Body) != len(body) || r.Body[12345] != body[12345] {
			t.Fatalf("get %s after the drop: %v", id, err)
		}
	}
}

// Pages read through Badger's mappings between two periodic drops (compactions and the
// value-log GC read their files so) are dropped as soon as they add fileSlack to the
// file-backed RSS, not only at dropEvery, commits or not.
func TestDropWhenFilePagesGrow(t *testing.T) {
	s := openT(t, "", func(o *Options) { o.dropEvery = time.Hour })
	appendT(t, s, rec("q", "first"))
	// A table-like file under the store's directory, read through a mapping of its own.
	f, err := os.Create(filepath.Join(s.mapsDir, "999999.sst"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const size = 24 << 20
	if _, err := f.Write(make([]byte, size)); err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	before := rssFileKiB(t)
	sum := 0
	for i := 0; i < size; i += os.Getpagesize() {
		sum += int(m[i])
	}
	peak, after := before, before
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		after = rssFileKiB(t)
		peak = max(peak, after)
		if peak-after >= 16<<10 {
			break
		}
	}
	t.Logf("RssFile %d KiB before the reads, %d KiB at most, %d KiB after (sum %d)", before, peak, after, sum)
	if after-before >= 8<<10+4<<10 {
		t.Errorf("RssFile %d KiB before, %d KiB two seconds after reading 24 MiB: want it dropped back", before, after)
	}
}

func rssFileKiB(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "RssFile:" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	t.Skip("no RssFile in /proc/self/status")
	return 0
}

// A range Badger unmapped after the scan, and the kernel gave to anonymous memory, is left
// alone: MADV_DONTNEED there would zero live memory.
func TestAdviseSkipsRangeMappedAgain(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "000001.vlog")
	if err := os.WriteFile(path, make([]byte, 1<<16), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data, err := syscall.Mmap(int(f.Fd()), 0, 1<<16, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	ms := findMappings(dir, func([]byte) bool { return true })
	if len(ms) != 1 {
		t.Fatalf("found %d mappings of %s, want 1", len(ms), path)
	}
	// The file is unmapped and anonymous memory takes its place, as a new mapping may.
	addr := unsafe.Pointer(&data[0])
	if err := syscall.Munmap(data); err != nil {
		t.Fatal(err)
	}
	got, err := unix.MmapPtr(-1, 0, addr, 1<<16, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED)
	if err != nil || got != addr {
		t.Fatalf("map anonymous memory at %p: %v", addr, err)
	}
	anon := unsafe.Slice((*byte)(got), 1<<16)
	defer unix.MunmapPtr(got, 1<<16)
	for i := range anon {
		anon[i] = 0xA5
	}
	if n := advise(ms, syscall.MADV_DONTNEED); n != 0 {
		t.Errorf("advised %d ranges that no longer map the file", n)
	}
	if anon[0] != 0xA5 || anon[len(anon)-1] != 0xA5 {
		t.Fatal("the anonymous memory that took the file's range was zeroed")
	}
}
