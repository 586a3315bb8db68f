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
	return adviseMapped(dir, func(path []byte) bool {
		return bytes.HasSuffix(path, []byte(".mem")) || bytes.HasSuffix(path, []byte(".vlog"))
	}, syscall.MADV_RANDOM)
}

// dropBodyPages unmaps from this process the pages of the value logs under dir
// (MADV_DONTNEED). Badger writes and reads values through shared mappings of those files, so
// every body staged or streamed stayed resident, counted in the process's memory, until the
// kernel needed the room: a few 10 MiB bodies made tens of MiB of RSS. On a shared file
// mapping MADV_DONTNEED only drops this process's page-table entries: the data stays in the
// page cache (dirty pages too, written back and synced as before), and a later access faults
// it in again.
func dropBodyPages(dir string) int {
	return adviseMapped(dir, func(path []byte) bool {
		return bytes.HasSuffix(path, []byte(".vlog"))
	}, syscall.MADV_DONTNEED)
}

// adviseMapped applies advice to the mappings of files under dir that match, and returns how
// many it advised.
func adviseMapped(dir string, match func(path []byte) bool, advice int) int {
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return 0
	}
	prefix := []byte(dir + string(filepath.Separator))
	n := 0
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
		_, _, errno := syscall.Syscall(syscall.SYS_MADVISE, uintptr(start), uintptr(end-start), uintptr(advice))
		if errno == 0 {
			n++
		}
	}
	return n
}
