// Package profile writes CPU and heap profiles of a whole run when an environment variable
// names a file: a way to see where a benchmark's time goes in the real processes, without an
// HTTP endpoint. It is undocumented for users on purpose (cmd/hookbench and people chasing
// performance set it); unset, it costs nothing.
package profile

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
)

// Start starts a CPU profile into $<prefix>_CPUPROFILE, and arranges a heap profile (allocations
// since start, and what is in use) into $<prefix>_MEMPROFILE; the returned stop writes and
// closes both, and an execution trace into $<prefix>_TRACE (go tool trace -pprof=sched or
// syscall shows where wall time waits). Any variable may be unset. Errors go to stderr: profiling never stops the
// program.
func Start(prefix string) (stop func()) {
	var cpu *os.File
	if path := os.Getenv(prefix + "_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "cpu profile:", err)
		} else {
			cpu = f
		}
	}
	var tr *os.File
	if path := os.Getenv(prefix + "_TRACE"); path != "" {
		f, err := os.Create(path)
		if err == nil {
			err = trace.Start(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "trace:", err)
		} else {
			tr = f
		}
	}
	mem := os.Getenv(prefix + "_MEMPROFILE")
	return func() {
		if tr != nil {
			trace.Stop()
			tr.Close()
			tr = nil
		}
		if cpu != nil {
			pprof.StopCPUProfile()
			cpu.Close()
			cpu = nil
		}
		if mem != "" {
			f, err := os.Create(mem)
			if err == nil {
				runtime.GC()
				err = pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "heap profile:", err)
			}
			mem = ""
		}
	}
}
