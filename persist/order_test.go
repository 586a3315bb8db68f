package persist

import (
	"context"
	"crypto/rand"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
)

// TestIDsInCommitOrder: an Append that got its id before another but was committed in a later
// batch must still get the larger id, since the relay answers 202 after the commit and "id
// order is the order of the 202s". The first append is held just before the committer gets
// it, the second is committed meanwhile.
func TestIDsInCommitOrder(t *testing.T) {
	s := openT(t, "", nil)
	hold, held := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	s.submitHook = func() {
		if calls.Add(1) == 1 { // not a sync.Once: its other callers would wait for this one
			close(held)
			<-hold
		}
	}
	first := rec("q", "first")
	done := make(chan error, 1)
	go func() { done <- s.Append(context.Background(), first) }()
	<-held
	second := appendT(t, s, rec("q", "second"))
	close(hold)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if first.ID <= second.ID {
		t.Fatalf("committed later with the smaller id: first (committed second) %s, second %s", first.ID, second.ID)
	}
	got := leaseAll(t, s, "q")
	if want := []string{"second", "first"}; !slices.Equal(got, want) {
		t.Fatalf("lease order %q, want commit order %q", got, want)
	}
}

// TestIDsFollowReturns runs many concurrent appenders: whenever one Append returned before
// another was called, its id is the smaller.
func TestIDsFollowReturns(t *testing.T) {
	s := openT(t, "", nil)
	const producers, each = 16, 60
	type done struct {
		id            string
		called, after int64 // the shared counter when Append was called and right after it returned
	}
	var clock atomic.Int64
	var mu sync.Mutex
	var all []done
	var wg sync.WaitGroup
	for range producers {
		wg.Go(func() {
			for range each {
				r := rec("q", "x")
				called := clock.Add(1)
				if err := s.Append(context.Background(), r); err != nil {
					t.Error(err)
					return
				}
				after := clock.Add(1)
				mu.Lock()
				all = append(all, done{r.ID, called, after})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	sort.Slice(all, func(i, j int) bool { return all[i].after < all[j].after })
	// For each record, every record that returned before it was called has a smaller id:
	// keep the largest id among those returned so far.
	byCall := slices.Clone(all)
	sort.Slice(byCall, func(i, j int) bool { return byCall[i].called < byCall[j].called })
	maxID, k := "", 0
	for _, d := range byCall {
		for k < len(all) && all[k].after < d.called {
			maxID = max(maxID, all[k].id)
			k++
		}
		if d.id <= maxID {
			t.Fatalf("id %s (called at %d) not after %s, returned before it was called", d.id, d.called, maxID)
		}
	}
}

// leaseAll leases every due record of queue and returns their bodies in lease order.
func leaseAll(t *testing.T, s *Store, queue string) []string {
	t.Helper()
	recs, err := s.Lease(queue, 1000, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var bodies []string
	for _, r := range recs {
		bodies = append(bodies, string(r.Body))
	}
	return bodies
}

// TestIDsAfterReopenFollowStored: after a restart, new ids sort after the stored ones even if
// the clock is now behind them (a clock stepped back).
func TestIDsAfterReopenFollowStored(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, nil)
	ahead := ulid.MustNew(ulid.Timestamp(time.Now().Add(10*time.Minute)), rand.Reader).String()
	r := rec("q", "ahead")
	r.ID = ahead
	appendT(t, s, r)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir, nil)
	if got := appendT(t, s, rec("q", "after")).ID; got <= ahead {
		t.Fatalf("id after reopen %s, want after the stored %s", got, ahead)
	}
}
