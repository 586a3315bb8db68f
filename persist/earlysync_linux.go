package persist

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to start writing n bytes of f at off to the disk, without
// waiting (sync_file_range, SYNC_FILE_RANGE_WRITE): a body file's pages then go out while the
// rest of the body arrives, and the one fsync at its end waits for little more than its last
// flush. It only starts I/O, so nothing about durability rests on it; an error is ignored.
func startWriteback(f *os.File, off, n int64) {
	unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}
