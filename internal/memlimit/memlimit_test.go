package memlimit

import (
	"math"
	"runtime/debug"
	"testing"
)

func TestDefault(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })

	t.Setenv("GOMEMLIMIT", "")
	if got := Default(64 << 20); got != 64<<20 || debug.SetMemoryLimit(-1) != 64<<20 {
		t.Fatalf("Default(64 MiB) = %d, limit %d", got, debug.SetMemoryLimit(-1))
	}
	// The user's GOMEMLIMIT wins: the runtime read it at start, Default leaves the limit alone.
	debug.SetMemoryLimit(math.MaxInt64)
	t.Setenv("GOMEMLIMIT", "off")
	if got := Default(64 << 20); got != math.MaxInt64 || debug.SetMemoryLimit(-1) != math.MaxInt64 {
		t.Fatalf("with GOMEMLIMIT set, Default changed the limit to %d", debug.SetMemoryLimit(-1))
	}
}
