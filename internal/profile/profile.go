// Package profile writes CPU and heap profiles of a whole run when an environment variable
// names a file: a way to see where a benchmark's time goes in the real processes, without an
// HTTP endpoint. It is undocumented for users on purpose (cmd/hookbench and people chasing
// performance set it); unset, it costs nothing.
package profile

import (
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
	"time"
)

// Start starts a CPU profile into $<prefix>_CPUPROFILE, and arranges a heap profile (allocations
// since start, and what is in use) into $<prefix>_MEMPROFILE; the returned stop writes and
// closes both, and an execution trace into $<prefix>_TRACE (go tool trace -pprof=sched or
// syscall shows where wall time waits). Any variable may be unset. Errors go to stderr: profiling never stops the
// program. $<prefix>_PEAKHEAP names a file that holds the in-use heap profile taken when the
// live heap was at its highest (checked four times a second): what filled memory at the peak.
//
// A "%p" in a path stands for the process id, so that several processes of one run (the
// relays of a cluster) each write their own file.
func Start(prefix string) (stop func()) {
	var cpu *os.File
	if path := env(prefix + "_CPUPROFILE"); path != "" {
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
	if path := env(prefix + "_TRACE"); path != "" {
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
	mem := env(prefix + "_MEMPROFILE")
	stopPeak := peakHeap(env(prefix + "_PEAKHEAP"))
	return func() {
		stopPeak()
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

// peakHeap writes the in-use heap profile into path each time the live heap (as of the last
// GC) exceeds the highest seen so far; the returned stop ends it. An empty path does nothing.
func peakHeap(path string) (stop func()) {
	if path == "" {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		var highest uint64
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			metrics.Read(sample)
			if live := sample[0].Value.Uint64(); live > highest {
				highest = live
				if err := writeProfile(path, "heap"); err != nil {
					fmt.Fprintln(os.Stderr, "peak heap profile:", err)
					return
				}
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

func writeProfile(path, name string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	err = pprof.Lookup(name).WriteTo(f, 0)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// env is the variable's value with "%p" replaced by the process id.
func env(name string) string {
	return strings.ReplaceAll(os.Getenv(name), "%p", strconv.Itoa(os.Getpid()))
}
