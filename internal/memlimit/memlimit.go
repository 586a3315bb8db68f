// Package memlimit gives a program a soft memory limit unless the user set one. Without it,
// the Go GC lets the heap grow to twice what is live before it collects, and under load that
// headroom (Badger's table builders and memtable arenas coming and going) doubled the peak RSS
// of relay and agent. A soft limit makes the GC collect earlier as the heap nears it; it never
// fails an allocation.
package memlimit

import (
	"os"
	"runtime/debug"
)

// Default sets the soft memory limit to bytes, unless GOMEMLIMIT is set in the environment
// (then the runtime already applied the user's value, "off" included). It returns the limit in
// effect.
func Default(bytes int64) int64 {
	if os.Getenv("GOMEMLIMIT") != "" {
		return debug.SetMemoryLimit(-1)
	}
	debug.SetMemoryLimit(bytes)
	return bytes
}
