//go:build linux

package persist

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// adviseRandom marks Badger's memory-mapped logs under dir (memtable WALs "*.mem", value logs
// "*.vlog") MADV_RANDOM, and returns how many mappings it marked.
//
// Badger appends to those logs through shared mappings and syncs them with msync. On Linux
// 6.x, a write fault on such a mapping may bring in a large folio (up to 2 MiB), and writeback
// writes a dirty folio whole: every commit then wrote its few KiB plus the rest of the folio
// again. Measured here (ext4, kernel 6.18): 40 KB appended and synced per commit wrote 846 KiB
// to disk per commit, 20 times the data; the relay wrote 2.5 GB for 30k webhooks of 1 KiB.
// MADV_RANDOM turns off read-around for the mapping, so faults bring in single pages and
// writeback writes what changed (43 KiB per commit). It is only a hint: it changes no data
// and no durability, and a range that was unmapped meanwhile just fails.
func adviseRandom(dir string) int {
	return eachMapping(dir, func(name []byte) bool {
		return bytes.HasSuffix(name, []byte(".mem")) || bytes.HasSuffix(name, []byte(".vlog"))
	}, syscall.MADV_RANDOM)
}

// dropMapped unmaps the resident pages of every Badger file mapped under dir (logs and
// tables) from this process, MADV_DONTNEED, and returns how many mappings it advised.
//
// Badger maps its value logs, memtable WALs and tables and never lets go of a page it touched:
// each page written or read stays resident in the process (RssFile) as long as its file is
// mapped, so the relay's RSS grew with every webhook stored (240 MiB of file pages after 200k of
// 1 KiB). The mappings are shared file mappings: dropping a page keeps its data, dirty or not,
// in the page cache, and the next access maps it again from there; syncing is unaffected.
func dropMapped(dir string) int {
	return eachMapping(dir, func(name []byte) bool {
		return bytes.HasSuffix(name, []byte(".mem")) || bytes.HasSuffix(name, []byte(".vlog")) ||
			bytes.HasSuffix(name, []byte(".sst"))
	}, syscall.MADV_DONTNEED)
}

// dropBodyPages is dropMapped for the value logs alone, cheap enough to run every 100 ms while
// commits happen: bodies staged or streamed through them would otherwise stay resident until
// the next full pass (a few 10 MiB bodies made tens of MiB of RSS).
func dropBodyPages(dir string) int {
	return eachMapping(dir, func(name []byte) bool {
		return bytes.HasSuffix(name, []byte(".vlog"))
	}, syscall.MADV_DONTNEED)
}

// fileResident returns the process's resident file-backed (and shared) memory in bytes, from
// /proc/self/statm: one small read, cheap enough for every adviseEvery. 0 when unreadable.
func fileResident() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := bytes.Fields(b) // size resident shared text lib data dt, in pages
	if len(f) < 3 {
		return 0
	}
	n, err := strconv.ParseInt(string(f[2]), 10, 64)
	if err != nil {
		return 0
	}
	return n * int64(os.Getpagesize())
}

// eachMapping applies advice to the mappings of files under dir whose name match accepts.
func eachMapping(dir string, match func(name []byte) bool, advice int) int {
	return advise(findMappings(dir, match), advice)
}

// mapping is one file mapping as /proc/self/maps listed it.
type mapping struct {
	start, end uint64
	span, path string // "start-end" as listed, and the file
}

// findMappings lists the mappings of files under dir whose name match accepts.
func findMappings(dir string, match func(name []byte) bool) []mapping {
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return nil
	}
	prefix := []byte(dir + string(filepath.Separator))
	var out []mapping
	for line := range bytes.Lines(maps) {
		// start-end perms offset dev inode path
		f := bytes.Fields(line)
		if len(f) < 6 || !bytes.HasPrefix(f[5], prefix) || !match(f[5]) {
			continue
		}
		lo, hi, ok := bytes.Cut(f[0], []byte("-"))
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(string(lo), 16, 64)
		end, err2 := strconv.ParseUint(string(hi), 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		out = append(out, mapping{start: start, end: end, span: string(f[0]), path: string(f[5])})
	}
	return out
}

// advise applies advice to each mapping that still maps its file, and returns how many it
// advised. Badger unmaps files from its own goroutines (compaction, memtable flushes, value-log
// GC), and the kernel may hand the range to a new mapping at once: MADV_DONTNEED on what is
// now anonymous memory (the Go runtime's, or libc's) would zero it. So each range is checked
// again just before its madvise, through /proc/self/map_files, which names the file mapped at
// exactly that range (readable without privileges); that leaves a window of two system calls
// instead of the whole scan.
func advise(ms []mapping, advice int) int {
	n := 0
	for _, m := range ms {
		if p, err := os.Readlink("/proc/self/map_files/" + m.span); err != nil || p != m.path {
			continue
		}
		_, _, errno := syscall.Syscall(syscall.SYS_MADVISE, uintptr(m.start), uintptr(m.end-m.start), uintptr(advice))
		if errno == 0 {
			n++
		}
	}
	return n
}
