package persist

import (
	"context"
	"testing"
	"time"
)

// BenchmarkSweep measures the retention sweep deleting finished records that left the recent
// cache long ago: 20,000 records of 1 KiB appended and delivered, then one GC with
// KeepDoneMax 1 deleting all but one (KeepDeadMax set high: no early sweep meanwhile); per
// record swept. Run with
//
//	go test -bench=Sweep -run='^$' -benchtime=3x ./persist
func BenchmarkSweep(b *testing.B) {
	const n = 20000
	body := make([]byte, 1<<10)
	for range b.N {
		b.StopTimer()
		s := openT(b, "", func(o *Options) {
			o.KeepDoneMax = 1
			o.KeepDeadMax = 1 << 20
			o.KeepDone = time.Hour
			o.GCInterval = time.Hour
		})
		ids := make([]string, 0, n)
		for range n / 500 {
			batch := make([]*Record, 500)
			errs := make(chan error, len(batch))
			for i := range batch {
				batch[i] = &Record{Queue: "q", Method: "POST", Body: body}
				go func() { errs <- s.Append(context.Background(), batch[i]) }()
			}
			for range batch {
				if err := <-errs; err != nil {
					b.Fatal(err)
				}
			}
			for _, r := range batch {
				ids = append(ids, r.ID)
			}
		}
		changes := make([]Change, len(ids))
		for i, id := range ids {
			changes[i] = Change{ID: id, State: StateDelivered}
		}
		for _, err := range s.Apply(changes) {
			if err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		start := time.Now()
		swept, err := s.sweep(time.Now())
		if err != nil || swept != n-1 {
			b.Fatalf("swept %d, %v; want %d", swept, err, n-1)
		}
		b.ReportMetric(float64(time.Since(start).Microseconds())/float64(swept), "µs/record")
		b.StopTimer()
		s.Close()
	}
}
