package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// diskResult is what the disk under the work directory does: the floor under every durable
// shape, since relay and agent each write a webhook to their logs and sync before answering.
type diskResult struct {
	syncMs  float64 // median time of a 4 KiB append + fdatasync
	syncMBs float64 // MB/s writing 64 KiB at a time, fdatasync after each (the burst's pattern)
	seqMBs  float64 // MB/s writing 64 MiB in 1 MiB writes, one fdatasync at the end
}

// measureDisk times the disk in dir with the sync pattern the stores use.
func measureDisk(dir string) (diskResult, error) {
	f, err := os.CreateTemp(dir, "disk-")
	if err != nil {
		return diskResult{}, fmt.Errorf("disk probe: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	var d diskResult
	small := make([]byte, 4<<10)
	times := make([]float64, 0, 200)
	for range 200 {
		start := time.Now()
		if _, err := f.Write(small); err != nil {
			return d, fmt.Errorf("disk probe: %w", err)
		}
		if err := f.Sync(); err != nil {
			return d, fmt.Errorf("disk probe: %w", err)
		}
		times = append(times, float64(time.Since(start).Microseconds())/1000)
	}
	slices.Sort(times)
	d.syncMs = times[len(times)/2]

	mid := make([]byte, 64<<10)
	start := time.Now()
	for range 256 {
		if _, err := f.Write(mid); err != nil {
			return d, fmt.Errorf("disk probe: %w", err)
		}
		if err := f.Sync(); err != nil {
			return d, fmt.Errorf("disk probe: %w", err)
		}
	}
	d.syncMBs = float64(256*len(mid)) / 1e6 / time.Since(start).Seconds()

	big := make([]byte, 1<<20)
	g, err := os.Create(filepath.Join(dir, "disk-seq"))
	if err != nil {
		return d, fmt.Errorf("disk probe: %w", err)
	}
	defer os.Remove(g.Name())
	defer g.Close()
	start = time.Now()
	for range 64 {
		if _, err := g.Write(big); err != nil {
			return d, fmt.Errorf("disk probe: %w", err)
		}
	}
	if err := g.Sync(); err != nil {
		return d, fmt.Errorf("disk probe: %w", err)
	}
	d.seqMBs = float64(64*len(big)) / 1e6 / time.Since(start).Seconds()
	return d, nil
}

// line says what the disk allows: each relayed byte is written and synced three times
// (relay, agent, the durable target) where direct writes it once, and a relayed webhook waits
// for at least two syncs on each side (value log and WAL) before the target's. A commit of a
// burst writes more than 64 KiB and less than 64 MiB, so the cap lies between what the two
// synced write rates give.
func (d diskResult) line() string {
	if d.seqMBs == 0 {
		return ""
	}
	per64k := float64(3 * 64 << 10)
	return fmt.Sprintf("\nDisk under the stores: fdatasync of a 4 KiB append %.2f ms (median of 200); "+
		"64 KiB writes synced each %.0f MB/s; 64 MiB then one sync %.0f MB/s. Every relayed byte is "+
		"written and synced three times (relay, agent, the durable target; direct: once), so this "+
		"disk caps the relayed 64 KiB burst between %s/s (each commit synced as small writes are) "+
		"and %s/s (as large ones), and a relayed 10 MiB webhook at ≥ %.0f ms, whatever the software "+
		"does; a relayed webhook waits for four syncs more than a direct one (value log and WAL on "+
		"each side), ≥ %.2f ms at this disk's median.\n",
		d.syncMs, d.syncMBs, d.seqMBs, rate(d.syncMBs*1e6/per64k), rate(d.seqMBs*1e6/per64k),
		3*10*1.048576/d.seqMBs*1000, 4*d.syncMs)
}
