package persist

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

var benchRates sync.Map // name → records/s, for the ratio

// BenchmarkAppend measures durable appends of 1 KiB bodies: the group-committing Store with
// 1, 16 and 64 producers (relay profile), and a baseline of one synced Badger transaction per
// record (SyncWrites=true, db.Update each) with 16 producers; then their ratio at 16. Run with
//
//	go test -bench=Append -run='^$' -benchtime=2s ./persist
func BenchmarkAppend(b *testing.B) {
	body := make([]byte, 1<<10)
	for _, producers := range []int{1, 16, 64} {
		name := fmt.Sprintf("group/producers=%d", producers)
		b.Run(name, func(b *testing.B) {
			s := openT(b, "", func(o *Options) { o.Small = false })
			rate := runProducers(b, producers, func() error {
				return s.Append(context.Background(), &Record{Queue: "q", Method: "POST",
					Headers: []Header{{"Content-Type", "application/json"}}, Body: body})
			})
			benchRates.Store(name, rate)
		})
	}
	b.Run("baseline-txn-per-record/producers=16", func(b *testing.B) {
		db, err := badger.Open(badger.DefaultOptions(b.TempDir()).WithSyncWrites(true).
			WithLogger(nil).WithMemTableSize(64 << 20).WithValueLogFileSize(64 << 20))
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		var n atomic.Int64
		rate := runProducers(b, 16, func() error {
			// The same bytes as a Store append: metadata and body under their keys.
			r := &Record{ID: fmt.Sprint("base-", n.Add(1)), Queue: "q", Method: "POST",
				Headers: []Header{{"Content-Type", "application/json"}}, Body: body, State: StateReady}
			meta := encodeMeta(r, len(body))
			return db.Update(func(txn *badger.Txn) error {
				if err := txn.Set(bodyKey(r.ID, 0), body); err != nil {
					return err
				}
				return txn.Set(metaKey(r.ID), meta)
			})
		})
		benchRates.Store("baseline", rate)
	})
	// The ratio as a metric of its own (benchmark logs of a parent are not printed).
	b.Run("ratio/producers=16", func(b *testing.B) {
		g, ok1 := benchRates.Load("group/producers=16")
		base, ok2 := benchRates.Load("baseline")
		if !ok1 || !ok2 {
			b.Skip("needs both the group and the baseline runs")
		}
		for range b.N {
		}
		b.ReportMetric(g.(float64)/base.(float64), "group/baseline")
	})
}

// runProducers runs b.N calls of fn spread over producers goroutines and reports records/s.
func runProducers(b *testing.B, producers int, fn func() error) float64 {
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range producers {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				if err := fn(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	rate := float64(b.N) / time.Since(start).Seconds()
	b.ReportMetric(rate, "records/s")
	return rate
}
