//go:build unix

package persist

import (
	"io/fs"
	"syscall"
)

// allocated is the space a file takes on disk: Badger preallocates sparse files.
func allocated(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return fi.Size()
}
