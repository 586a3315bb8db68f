package jsqueue_test

import (
	"bytes"
	"runtime"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/natstest"
	"github.com/hookrelay/hookrelay/persist"
	"github.com/hookrelay/hookrelay/relay/jsqueue"
)

// benchCluster starts a three-node R3 cluster (`sync_interval: always`) and opens a queue on
// it; cpu is the three servers' CPU time so far.
func benchCluster(b *testing.B) (q *jsqueue.Queue, cpu func() time.Duration) {
	c := natstest.Start(b, 3)
	q, err := jsqueue.Open(b.Context(), jsqueue.Options{URLs: c.URLs(), Replicas: 3, Name: "BENCH", GCInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { q.Close() })
	return q, func() (d time.Duration) {
		for _, n := range c.Nodes {
			d += n.CPU()
		}
		return d
	}
}

// BenchmarkClusterAppend: 1 KiB appends from 16 goroutines on a three-node R3 cluster
// (`sync_interval: always`); nats-µs/op is the three servers' CPU per append. Run with
// go test -run='^$' -bench=ClusterAppend -benchtime=20000x ./relay/jsqueue
//
// Publishing what waits at once as one atomic batch was tried (86% of the appends went in
// batches): 5.3k appends/s and 212 µs of server CPU each, against 6.6k/s and 185 µs alone, so
// ingress publishes go one by one.
func BenchmarkClusterAppend(b *testing.B) {
	q, cpu := benchCluster(b)
	body := bytes.Repeat([]byte("x"), 1024)
	b.SetParallelism(16 / runtime.GOMAXPROCS(0))
	before := cpu()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := q.Append(b.Context(), &persist.Record{Queue: "ep", Method: "POST", Body: body}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64((cpu()-before).Microseconds())/float64(b.N), "nats-µs/op")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
}

// BenchmarkClusterCycle: what one webhook costs the cluster from ingress to its outcome, the
// relay's part only: 16 goroutines append 1 KiB webhooks while one leases them (32 a round,
// as a relay session does) and records each round's outcomes as delivered in one Apply (acks
// are held back and mostly never written: recorder.go). nats-µs/op is the three servers' CPU
// per webhook. Run with
// go test -run='^$' -bench=ClusterCycle -benchtime=10000x ./relay/jsqueue
func BenchmarkClusterCycle(b *testing.B) {
	q, cpu := benchCluster(b)
	body := bytes.Repeat([]byte("x"), 1024)
	before := cpu()
	b.ResetTimer()
	done := make(chan error, 1)
	go func() {
		finished := 0
		for finished < b.N {
			wake, _ := q.Ready("default", "ep")
			recs, err := q.Lease(b.Context(), "default", "ep", q.LeaseBatch(), time.Minute)
			if err != nil {
				done <- err
				return
			}
			if len(recs) == 0 {
				select {
				case <-wake:
				case <-time.After(100 * time.Millisecond):
				}
				continue
			}
			changes := make([]persist.Change, len(recs))
			for i, r := range recs {
				changes[i] = persist.Change{ID: r.ID, State: persist.StateDelivered,
					Delivery: &persist.Delivery{At: time.Now(), Status: 200}}
			}
			for _, err := range q.Apply(b.Context(), "default", changes) {
				if err != nil {
					done <- err
					return
				}
			}
			finished += len(recs)
		}
		done <- nil
	}()
	b.SetParallelism(16 / runtime.GOMAXPROCS(0))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := q.Append(b.Context(), &persist.Record{Queue: "ep", Method: "POST", Body: body}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64((cpu()-before).Microseconds())/float64(b.N), "nats-µs/op")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "webhooks/s")
}
