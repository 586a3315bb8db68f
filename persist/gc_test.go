package persist

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestGCSweep(t *testing.T) {
	s := openT(t, "", func(o *Options) { o.KeepDone = time.Hour; o.KeepDoneMax = 3 })
	var ids []string
	for i := range 6 {
		r := appendT(t, s, rec("q", fmt.Sprint(i)))
		ids = append(ids, r.ID)
	}
	pending := appendT(t, s, rec("q", "pending"))
	for _, id := range ids[:5] {
		mustOK(t, s.Complete(id, StateDelivered, nil, ""))
	}
	mustOK(t, s.Complete(ids[5], StateDead, nil, "x"))
	mustOK(t, s.GC())
	for i, id := range ids {
		_, err := s.Get(id)
		if kept := i >= 2; kept != (err == nil) {
			t.Errorf("record %d: %v (KeepDoneMax 3 keeps the newest three delivered; the dead one counts apart)", i, err)
		}
	}
	if _, err := s.Get(pending.ID); err != nil {
		t.Fatalf("gc removed a pending record: %v", err)
	}

	// KeepDone: older finished records go; with HoldUnreported, only once reported.
	s = openT(t, "", func(o *Options) { o.KeepDone = time.Nanosecond; o.HoldUnreported = true })
	a := appendT(t, s, rec("q", "a"))
	b := appendT(t, s, rec("q", "b"))
	mustOK(t, s.Complete(a.ID, StateDelivered, nil, ""))
	mustOK(t, s.Complete(b.ID, StateDead, nil, "x"))
	mustOK(t, s.MarkReported(a.ID))
	mustOK(t, s.GC())
	if _, err := s.Get(a.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("reported record past KeepDone kept: %v", err)
	}
	if _, err := s.Get(b.ID); err != nil {
		t.Fatalf("unreported record removed despite HoldUnreported: %v", err)
	}
}

// TestDiskStaysBounded streams records through the store (append, deliver, delete) and checks
// the data dir does not grow with the count: 6k records, three of four with 2 KiB bodies
// (kept in the LSM tree) and one of four 40 KiB (value log), are ~66 MiB written.
func TestDiskStaysBounded(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("measures allocated blocks; Badger's files are sparse")
	}
	dir := t.TempDir()
	s := openT(t, dir, nil)
	start := diskUsage(t, dir)
	small, big := strings.Repeat("s", 2<<10), strings.Repeat("B", 40<<10)
	const producers, rounds, perRound = 16, 6, 63 // per producer
	var written, peak int64
	for round := range rounds {
		var wg sync.WaitGroup
		var mu sync.Mutex
		for range producers {
			wg.Go(func() {
				for i := range perRound {
					body := small
					if i%4 == 0 {
						body = big
					}
					r := rec("q", body)
					if err := s.Append(context.Background(), r); err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					written += r.Size
					mu.Unlock()
					if err := s.Complete(r.ID, StateDelivered, &Delivery{At: time.Now(), Status: 200}, ""); err != nil {
						t.Error(err)
					}
					if err := s.Delete(r.ID); err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		mustOK(t, s.GC()) // as the GC loop would, every GCInterval
		use := diskUsage(t, dir)
		peak = max(peak, use)
		t.Logf("round %d: %.1f MiB written, dir %.1f MiB", round, float64(written)/(1<<20), float64(use)/(1<<20))
	}
	end := diskUsage(t, dir)
	t.Logf("start %.1f MiB, peak %.1f MiB, end %.1f MiB after %.1f MiB", float64(start)/(1<<20),
		float64(peak)/(1<<20), float64(end)/(1<<20), float64(written)/(1<<20))
	if written < 60<<20 {
		t.Fatalf("only %d bytes written: the test proves nothing", written)
	}
	// What stays: the value-log file being written (16 MiB; value-log GC never rewrites it),
	// the memtable WALs and a few small tables. None of it grows with the count.
	if peak > 32<<20 || end > 24<<20 {
		t.Fatalf("data dir grew: peak %d, end %d bytes\n%s", peak, end, listDir(t, dir))
	}
	if st := s.Stats(); len(st) != 0 {
		t.Fatalf("records left: %+v", st)
	}
}
