package persist

import (
	"context"
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

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// TestBacklogMemoryBounded: records waiting in a queue cost no memory each. Between 40k and
// 120k waiting records the Go heap may grow by a fixed allowance only (an index entry per
// record, as the store once kept, took ~300 bytes: 24 MiB for the 80k). HOOKRELAY_HEAP_PROFILE
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
	if p := os.Getenv("HOOKRELAY_HEAP_PROFILE"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		pprof.Lookup("heap").WriteTo(f, 0)
		f.Close()
	}
	grew := int64(after) - int64(before)
	t.Logf("heap in use %d MiB after 40k, %d MiB after 120k waiting", before>>20, after>>20)
	if grew > 6<<20 {
		t.Errorf("heap grew by %d MiB for 80k more waiting records, want a fixed amount (≤ 6 MiB)", grew>>20)
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
}
