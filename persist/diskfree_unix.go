//go:build linux || darwin || freebsd

package persist

import "syscall"

// diskFree returns the bytes available to us on the filesystem holding dir.
func diskFree(dir string) (int64, bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, false
	}
	return int64(uint64(st.Bavail) * uint64(st.Bsize)), true
}
