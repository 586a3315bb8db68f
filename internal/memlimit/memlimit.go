// Package memlimit gives a program a soft memory limit unless the user set one. Without it,
// the Go GC lets the heap grow to twice what is live before it collects, and under load that
// headroom (Badger's table builders and memtable arenas coming and going) doubled the peak RSS
// of relay and agent. A soft limit makes the GC collect earlier as the heap nears it; it never
// fails an allocation.
//
// A fixed limit is wrong once what the program needs grows past it: the GC then runs back to
// back (up to half the CPU, the runtime's cap) and frees nothing. A relay holding 8,000 idle
// agents (200 MiB of sessions, most of it goroutine stacks) under a fixed 56 MiB limit used
// 1.7 of 2 cores doing that. So the limit follows what the GC cannot free: it stays at the
// base while that is small, and is kept a share above it once it grows (Default): a quarter
// for a program that must stay small (the agent), a half where CPU matters more (the relay).
// Under sustained load Badger's caches fill and its table builds come and go; with a quarter's
// headroom on both sides the heap sat near the limit and the GC took a fifth to a quarter of
// each process's CPU, so that each 10,000-webhook burst on the same relay and agent ran slower
// (3.4k, 2.2k, 2.0k/s after the first); with half on both, 2.5–2.9k/s throughout, but the
// agent's peak RSS over the 64 KiB burst rose from 71–75 to 80–84 MiB (hookbench). Half for
// the relay alone: the last of four bursts 2.21–2.23k/s against 1.63–1.92k/s, relay CPU per
// webhook 230 against 328–335 µs, neither peak RSS higher (alternating runs of hookbench
// -transports ws -n1k 10000 -n64k 1000 -paced 300ms -large 0 -idle 0 -backlog 0 -cluster 0).
package memlimit

import (
	"os"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
)

// Default sets the soft memory limit to base, unless GOMEMLIMIT is set in the environment
// (then the runtime already applied the user's value, "off" included, and Default leaves it
// alone). From then on, once a second, the limit is raised to what the GC cannot free (live
// heap, goroutine stacks, runtime metadata) plus headroom percent of it when that is above
// base, and brought back toward base as it shrinks. It returns the limit in effect now.
func Default(base int64, headroom int) int64 {
	if os.Getenv("GOMEMLIMIT") != "" {
		return debug.SetMemoryLimit(-1)
	}
	debug.SetMemoryLimit(base)
	adaptHeadroom.Store(int64(headroom))
	if adapting.Swap(base) == 0 {
		go func() {
			for range time.Tick(adaptEvery) {
				if b := adapting.Load(); b > 0 {
					adapt(b, int(adaptHeadroom.Load()))
				}
			}
		}()
	}
	return base
}

// adapting is the base the limit follows from (0: it is left alone), adaptHeadroom the share.
var adapting, adaptHeadroom atomic.Int64

const adaptEvery = time.Second

// adapt sets the limit for the memory in use now (see Default), and returns it.
func adapt(base int64, headroom int) int64 {
	limit := max(base, floor()*int64(100+headroom)/100)
	debug.SetMemoryLimit(limit)
	return limit
}

// Runtime metrics floor reads.
var floorSamples = []metrics.Sample{
	{Name: "/memory/classes/total:bytes"},
	{Name: "/memory/classes/heap/released:bytes"},
	{Name: "/memory/classes/heap/objects:bytes"},
	{Name: "/memory/classes/heap/free:bytes"},
	{Name: "/memory/classes/heap/unused:bytes"},
	{Name: "/gc/heap/live:bytes"},
}

var floorMu sync.Mutex

// floor is the memory the runtime holds that no collection can give back: everything it has
// mapped, less the dead objects (live heap counted instead of all heap objects) and the free
// heap pages (the scavenger returns those).
func floor() int64 {
	floorMu.Lock()
	defer floorMu.Unlock()
	metrics.Read(floorSamples)
	v := func(i int) int64 { return int64(floorSamples[i].Value.Uint64()) }
	total, released, objects, free, unused, live := v(0), v(1), v(2), v(3), v(4), v(5)
	return total - released - objects - free - unused + live
}
