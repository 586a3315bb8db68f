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

// BenchmarkDrain measures what draining a backlog costs the store per record: b.N records of
// 1 KiB appended and the store opened again (so that nothing is in its recent cache, as
// after a long accept), then leased 256 at a time, each round acked and then finished as
// delivered, the way a relay's session and an agent's deliverer do. "cached" is the store as
// it is (a record read to be leased stays in the recent cache for its ack and outcome);
// "uncached" reads it again for each. CPU is the process's per record. Run with
//
//	go test -bench=Drain -run='^$' -benchtime=20000x ./persist
func BenchmarkDrain(b *testing.B) {
	for _, cached := range []bool{false, true} {
		name := map[bool]string{false: "uncached", true: "cached"}[cached]
		b.Run(name, func(b *testing.B) {
			defer func(was bool) { cacheLeased = was }(cacheLeased)
			cacheLeased = cached
			dir := b.TempDir()
			small := func(o *Options) { o.Small = false; o.LeaseBodyMax = 1 << 20 } // the relay's
			s := openT(b, dir, small)
			body := make([]byte, 1<<10)
			runProducers(b, 16, func() error {
				return s.Append(context.Background(), &Record{Queue: "q", Method: "POST",
					Headers: []Header{{"Content-Type", "application/json"}}, Body: body})
			})
			b.StopTimer()
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
			s = openT(b, dir, small)
			cpu := cpuTime()
			b.ResetTimer()
			for done := 0; done < b.N; {
				recs, err := s.Lease("q", 256, time.Minute)
				if err != nil {
					b.Fatal(err)
				}
				if len(recs) == 0 {
					b.Fatalf("nothing to lease after %d of %d", done, b.N)
				}
				acks := make([]Change, len(recs))
				outs := make([]Change, len(recs))
				for i, r := range recs {
					acks[i] = Change{ID: r.ID, State: StateAcked, Holder: "bench"}
					outs[i] = Change{ID: r.ID, State: StateDelivered, Delivery: &Delivery{At: time.Now(), Status: 200}}
				}
				for _, changes := range [][]Change{acks, outs} {
					for _, err := range s.Apply(changes) {
						if err != nil {
							b.Fatal(err)
						}
					}
				}
				done += len(recs)
			}
			b.StopTimer()
			if c := cpuTime() - cpu; c > 0 {
				b.ReportMetric(float64(c.Microseconds())/float64(b.N), "cpu-µs/record")
			}
		})
	}
}
