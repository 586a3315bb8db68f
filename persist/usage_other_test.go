//go:build !unix

package persist

import (
	"io/fs"
	"time"
)

// allocated is the file's length where block counts are not at hand (an overestimate).
func allocated(fi fs.FileInfo) int64 { return fi.Size() }

// cpuTime is unknown here.
func cpuTime() time.Duration { return 0 }
