package memlimit

import (
	"math"
	"runtime"
	"runtime/debug"
	"testing"
)

func TestDefault(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })

	t.Setenv("GOMEMLIMIT", "")
	if got := Default(64<<20, 25); got != 64<<20 || debug.SetMemoryLimit(-1) != 64<<20 {
		t.Fatalf("Default(64 MiB) = %d, limit %d", got, debug.SetMemoryLimit(-1))
	}
	adapting.Store(0) // the limit stays where the checks below put it
	// The user's GOMEMLIMIT wins: the runtime read it at start, Default leaves the limit alone.
	debug.SetMemoryLimit(math.MaxInt64)
	t.Setenv("GOMEMLIMIT", "off")
	if got := Default(64<<20, 25); got != math.MaxInt64 || debug.SetMemoryLimit(-1) != math.MaxInt64 {
		t.Fatalf("with GOMEMLIMIT set, Default changed the limit to %d", debug.SetMemoryLimit(-1))
	}
}

// Once more is live than the base allows, the limit rises above it (else the GC runs back to
// back and frees nothing: a relay with 8,000 idle agents used 1.7 of 2 cores so), and it
// comes back down to the base once that memory is free.
func TestLimitFollowsLiveMemory(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })
	const base = 16 << 20
	held := make([][]byte, 0, 64)
	for range 64 { // 64 MiB live
		b := make([]byte, 1<<20)
		for i := range b {
			b[i] = 1
		}
		held = append(held, b)
	}
	runtime.GC()
	got := adapt(base, 50)
	if got < 64<<20*3/2 || debug.SetMemoryLimit(-1) != got {
		t.Fatalf("with 64 MiB live the limit is %d MiB, want at least 96", got>>20)
	}
	runtime.KeepAlive(held)
	held = nil
	runtime.GC()
	if got := adapt(base, 50); got != base {
		t.Fatalf("with the memory free again the limit is %d MiB, want the base, %d", got>>20, base>>20)
	}
}
