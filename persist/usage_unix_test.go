//go:build unix

package persist

import (
	"io/fs"
	"syscall"
	"time"
)

// allocated is the space a file takes on disk: Badger preallocates sparse files.
func allocated(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return fi.Size()
}

// cpuTime is the process's user plus system CPU time so far (0 where unknown).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
