package persist

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConcurrentProducersLeasersAckers runs producers, delivering workers (nack or complete)
// and relay-style ackers against one store, plus readers; every record must end delivered
// exactly as appended, with its attempts counted. Meant for -race.
func TestConcurrentProducersLeasersAckers(t *testing.T) {
	s := openT(t, "", nil)
	const producers, each = 8, 150
	const total = producers * each
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var mu sync.Mutex
	bodies := map[string][]byte{}
	nacks := map[string]int{}
	var delivered atomic.Int64
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range each {
				q := []string{"agent", "relay"}[i%2]
				r := &Record{Queue: q, Method: "POST", Headers: []Header{{"P", fmt.Sprint(p)}}, Body: fmt.Appendf(nil, "p%d-%d", p, i)}
				if err := s.Append(ctx, r); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				bodies[r.ID] = r.Body
				mu.Unlock()
			}
		})
	}
	deliver := func(r *Record, rng *rand.Rand) error { // agent-style: retry some, then deliver
		if rng.IntN(4) == 0 {
			mu.Lock()
			nacks[r.ID]++
			mu.Unlock()
			next := time.Now()
			if rng.IntN(2) == 0 {
				next = next.Add(5 * time.Millisecond)
			}
			return s.Nack(r.ID, next, &Delivery{At: time.Now(), Status: 503})
		}
		if err := s.Complete(r.ID, StateDelivered, &Delivery{At: time.Now(), Status: 200}, ""); err != nil {
			return err
		}
		delivered.Add(1)
		return nil
	}
	ack := func(r *Record, _ *rand.Rand) error { // relay-style: ack, then the report arrives
		if err := s.Ack(r.ID); err != nil {
			return err
		}
		if err := s.Complete(r.ID, StateDelivered, nil, ""); err != nil {
			return err
		}
		delivered.Add(1)
		return nil
	}
	worker := func(q string, seed uint64, handle func(*Record, *rand.Rand) error) {
		rng := rand.New(rand.NewPCG(seed, 1))
		for delivered.Load() < total && ctx.Err() == nil {
			w := s.Wait(q)
			recs, err := s.Lease(q, 1+rng.IntN(16), 30*time.Second)
			if err != nil {
				t.Error(err)
				return
			}
			for _, r := range recs {
				mu.Lock()
				want := bodies[r.ID]
				mu.Unlock()
				if want != nil && !bytes.Equal(r.Body, want) {
					t.Errorf("leased %s with body %q, want %q", r.ID, r.Body, want)
				}
				if err := handle(r, rng); err != nil {
					t.Error(err)
				}
			}
			if len(recs) > 0 {
				continue
			}
			var timer <-chan time.Time
			if at, ok := s.NextDue(q); ok {
				timer = time.After(time.Until(at))
			}
			select {
			case <-w:
			case <-timer:
			case <-time.After(100 * time.Millisecond): // the last record may be delivered elsewhere
			case <-ctx.Done():
			}
		}
	}
	for i := range 3 {
		wg.Go(func() { worker("agent", uint64(i), deliver) })
		wg.Go(func() { worker("relay", uint64(i+10), ack) })
	}
	wg.Go(func() { // readers
		for delivered.Load() < total && ctx.Err() == nil {
			if _, err := s.List(Filter{Limit: 20}); err != nil {
				t.Error(err)
			}
			s.Stats()
			s.NextDue("agent")
		}
	})
	wg.Wait()
	if t.Failed() {
		return
	}
	if n := delivered.Load(); n != total {
		t.Fatalf("%d of %d delivered", n, total)
	}
	for id, body := range bodies {
		r, err := s.Get(id)
		if err != nil || r.State != StateDelivered || !bytes.Equal(r.Body, body) {
			t.Fatalf("%s: %+v %v", id, r, err)
		}
		wantAttempts := nacks[id]
		if r.Queue == "agent" {
			wantAttempts++ // the successful delivery counts too
		}
		if r.Attempts != wantAttempts {
			t.Fatalf("%s: %d attempts, want %d", id, r.Attempts, wantAttempts)
		}
	}
	for _, st := range s.Stats() {
		if st.Pending != 0 || st.Bytes != 0 {
			t.Fatalf("stats after draining: %+v", st)
		}
	}
}
