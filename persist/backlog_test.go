package persist

import (
	"context"
	"math"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"testing"
	"time"
)

// appendN appends n records of queue with 16 producers.
func appendN(t testing.TB, s *Store, queue string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	per := (n + 15) / 16
	for p := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := p * per; i < min((p+1)*per, n); i++ {
				if err := s.Append(context.Background(), &Record{Queue: queue, Method: "POST", Body: []byte("0123456789abcdef")}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("append: %v", err)
	}
}

// heapInUse is the Go heap allocated (live) after GC, the least of the samples over a second: Badger's
// compactions hold table builders (tens of MiB) for moments that a sample may fall into.
func heapInUse() uint64 {
	least := uint64(math.MaxUint64)
	for end := time.Now().Add(time.Second); time.Now().Before(end); {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		least = min(least, ms.HeapAlloc)
		time.Sleep(50 * time.Millisecond) // sampling, not waiting for an event
	}
	return least
}

// indexed is how many records the index holds in memory.
func indexed(s *Store) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, q := range s.idx.queues {
		n += len(q.entries)
	}
	return max(n, len(s.idx.byID))
}

// TestBacklogMemoryBounded: records waiting in a queue, or acked, cost no memory each: the
// index holds a window of them at most, and between 40k and 120k waiting records the Go heap
// grows by Badger's caches filling only (an index entry per record, as the store once kept,
// took ~600 bytes: 49 MiB for the 80k). HOOKRELAY_HEAP_PROFILE
// names a file for the heap profile at the end.
func TestBacklogMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("appends 120k records")
	}
	s := openT(t, "", nil)
	appendN(t, s, "q", 40000)
	before := heapInUse()
	appendN(t, s, "q", 80000)
	after := heapInUse()
	grew := int64(after) - int64(before)
	t.Logf("heap in use %d MiB after 40k, %d MiB after 120k waiting", before>>20, after>>20)
	if grew > 20<<20 {
		t.Errorf("heap grew by %d MiB for 80k more waiting records, want a fixed amount (≤ 20 MiB: Badger's caches filling)", grew>>20)
	}
	if n := indexed(s); n > windowMax {
		t.Errorf("%d records in memory with 120k waiting, want at most the window (%d)", n, windowMax)
	}
	if st := s.Stats(); len(st) != 1 || st[0].Pending != 120000 || st[0].Bytes != 120000*16 {
		t.Fatalf("stats %+v, want 120000 pending of 16 bytes", st)
	}
	// Every one of them is still handed out, oldest first, exactly once.
	last := ""
	seen := 0
	for seen < 120000 {
		recs, err := s.Lease("q", 500, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			t.Fatalf("lease ran dry after %d of 120000", seen)
		}
		ids := make([]string, len(recs))
		for i, r := range recs {
			if r.ID <= last {
				t.Fatalf("lease handed %s after %s", r.ID, last)
			}
			last = r.ID
			ids[i] = r.ID
		}
		seen += len(recs)
		if err := s.Ack(ids...); err != nil {
			t.Fatal(err)
		}
	}
	if recs, _ := s.Lease("q", 10, time.Minute); len(recs) != 0 {
		t.Fatalf("lease after all were handed out: %d more", len(recs))
	}
	// Held by an agent (acked), waiting for its report, they cost no memory each either.
	// Against the larger of the two earlier samples: the heap after 120k was sometimes lower
	// than after 40k (Badger's caches), and an index entry per acked record (~600 B) would
	// still add 69 MiB over either.
	if ref, acked := max(before, after), heapInUse(); int64(acked)-int64(ref) > 40<<20 {
		t.Errorf("heap %d MiB with 120k acked, %d MiB with them waiting (≤ 40 MiB more: Badger's caches filling)", acked>>20, ref>>20)
	}
	if n := indexed(s); n > 0 {
		t.Errorf("%d records in memory with all acked, want none", n)
	}
	if p := os.Getenv("HOOKRELAY_HEAP_PROFILE"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		pprof.Lookup("heap").WriteTo(f, 0)
		f.Close()
	}
	if st := s.Stats(); st[0].Pending != 120000 {
		t.Fatalf("stats %+v, want 120000 pending (acked)", st)
	}
	if l, err := s.List(Filter{Queue: "q", State: StateAcked, Limit: 5}); err != nil || len(l) != 5 || l[0].ID != last {
		t.Fatalf("list of acked: %v, %d, want 5 from %s", err, len(l), last)
	}
}
