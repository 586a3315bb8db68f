//go:build !linux

package persist

import "os"

// startWriteback is Linux only (sync_file_range); elsewhere the final fsync does it all.
func startWriteback(*os.File, int64, int64) {}
