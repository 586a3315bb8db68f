package persist

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
)

func TestAppendGet(t *testing.T) {
	s := openT(t, "", nil)
	r := rec("github", "{\"a\":\x00\xff}")
	r.Headers = append(r.Headers, Header{"x-Lower", " spaced  value "}, Header{"Empty", ""})
	appendT(t, s, r)
	if _, err := ulid.ParseStrict(r.ID); err != nil {
		t.Fatalf("id %q is not a ULID: %v", r.ID, err)
	}
	if r.State != StateReady || r.ReceivedAt.IsZero() || r.Size != int64(len(r.Body))+int64(len("Content-Typeapplication/jsonX-Dup1X-Dup2x-Lower spaced  value Empty")) {
		t.Fatalf("append did not fill in the record: %+v", r)
	}
	got, err := s.Get(r.ID)
	if err != nil {
		t.Fatal(err)
	}
	sameRecord(t, got, r)
	if ok, err := s.Has(r.ID); !ok || err != nil {
		t.Fatalf("has = %v, %v", ok, err)
	}

	// An id given by the caller (the agent keeps the relay's) is kept; a second append of it fails.
	given := rec("github", "")
	given.ID = "01J0RELAYID-given_1.x~"
	appendT(t, s, given)
	if got, err := s.Get(given.ID); err != nil || len(got.Body) != 0 {
		t.Fatalf("get given id: %+v, %v", got, err)
	}
	dup := rec("other", "x")
	dup.ID = given.ID
	if err := s.Append(context.Background(), dup); !errors.Is(err, ErrExists) {
		t.Fatalf("second append of an id: %v, want ErrExists", err)
	}

	for _, bad := range []*Record{{Queue: ""}, {Queue: "q", ID: "a/b"}, {Queue: "q", ID: "with space"}, {Queue: "q", ID: strings.Repeat("a", 129)}} {
		if err := s.Append(context.Background(), bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("append %+v: %v, want ErrInvalid", bad, err)
		}
	}
	for _, id := range []string{"nope", "a/b", ""} {
		if _, err := s.Get(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("get %q: %v, want ErrNotFound", id, err)
		}
		if ok, _ := s.Has(id); ok {
			t.Errorf("has %q = true", id)
		}
	}
}

// sameRecord compares what Append stored with what was read back.
func sameRecord(t *testing.T, got, want *Record) {
	t.Helper()
	if got.ID != want.ID || got.Queue != want.Queue || got.Method != want.Method ||
		got.Path != want.Path || got.Query != want.Query || !bytes.Equal(got.Body, want.Body) ||
		!reflect.DeepEqual(got.Headers, want.Headers) || !got.ReceivedAt.Equal(want.ReceivedAt) ||
		got.Size != want.Size || got.Replay != want.Replay {
		t.Fatalf("read back\n%+v\nwant\n%+v", got, want)
	}
}

func TestIDsSortByArrival(t *testing.T) {
	s := openT(t, "", nil)
	var ids []string
	for range 50 {
		ids = append(ids, appendT(t, s, rec("q", "x")).ID)
	}
	if !slices.IsSorted(ids) {
		t.Fatalf("ids of sequential appends are not sorted: %v", ids)
	}
	var mu sync.Mutex
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				id := s.ids.Next(time.Now())
				mu.Lock()
				if seen[id] {
					t.Errorf("duplicate id %s", id)
				}
				seen[id] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// stateOf returns the state List shows for id.
func stateOf(t *testing.T, s *Store, id string) State {
	t.Helper()
	r, err := s.Get(id)
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	return r.State
}

// leaseOne leases exactly the record with id (the queue must hold only it).
func leaseOne(t *testing.T, s *Store, queue, id string) {
	t.Helper()
	got, err := s.Lease(queue, 10, time.Minute)
	if err != nil || len(got) != 1 || got[0].ID != id {
		t.Fatalf("lease: %v, %v; want just %s", got, err, id)
	}
}

func TestTransitions(t *testing.T) {
	d := &Delivery{At: time.Now(), Status: 500, Millis: 12, Error: "boom"}
	reach := map[State]func(t *testing.T, s *Store, id string){
		StateReady:     func(*testing.T, *Store, string) {},
		StateLeased:    func(t *testing.T, s *Store, id string) { leaseOne(t, s, "q", id) },
		StateAcked:     func(t *testing.T, s *Store, id string) { mustOK(t, s.Ack(id)) },
		StateDelivered: func(t *testing.T, s *Store, id string) { mustOK(t, s.Complete(id, StateDelivered, d, "")) },
		StateDead:      func(t *testing.T, s *Store, id string) { mustOK(t, s.Complete(id, StateDead, d, "max attempts")) },
	}
	ops := map[string]func(s *Store, id string) error{
		"ack":            func(s *Store, id string) error { return s.Ack(id) },
		"nack":           func(s *Store, id string) error { return s.Nack(id, time.Now(), nil) },
		"deliver":        func(s *Store, id string) error { return s.Complete(id, StateDelivered, nil, "") },
		"die":            func(s *Store, id string) error { return s.Complete(id, StateDead, nil, "gone") },
		"complete-ready": func(s *Store, id string) error { return s.Complete(id, StateReady, nil, "") },
		"replay":         func(s *Store, id string) error { return s.Replay(id) },
		"report":         func(s *Store, id string) error { return s.MarkReported(id) },
		"release":        func(s *Store, id string) error { s.Release(id); return nil },
		"apply-ack":      func(s *Store, id string) error { return s.Apply([]Change{{ID: id, State: StateAcked}})[0] },
		"apply-die": func(s *Store, id string) error {
			return s.Apply([]Change{{ID: id, State: StateDead, Reason: "gone"}})[0]
		},
		"apply-ready": func(s *Store, id string) error { return s.Apply([]Change{{ID: id, State: StateReady}})[0] },
	}
	const R, L, A, D, X = StateReady, StateLeased, StateAcked, StateDelivered, StateDead
	var E State // ErrState expected, state unchanged
	// want[op] lists the outcome from Ready, Leased, Acked, Delivered, Dead.
	want := map[string][5]State{
		"ack":            {A, A, A, E, E},
		"nack":           {R, R, R, E, E},
		"deliver":        {D, D, D, D, D},
		"die":            {X, X, X, X, X},
		"complete-ready": {E, E, E, E, E},
		"replay":         {E, E, R, R, R},
		"report":         {E, E, E, D, X},
		"release":        {R, R, A, D, X},
		"apply-ack":      {A, A, A, E, E},
		"apply-die":      {X, X, X, X, X},
		"apply-ready":    {E, E, E, E, E},
	}
	s := openT(t, "", nil)
	for op, outcomes := range want {
		for i, from := range []State{R, L, A, D, X} {
			t.Run(fmt.Sprintf("%s-from-%v", op, from), func(t *testing.T) {
				r := appendT(t, s, rec("q", "body"))
				reach[from](t, s, r.ID)
				if got := stateOf(t, s, r.ID); got != from {
					t.Fatalf("setup reached %v, want %v", got, from)
				}
				err := ops[op](s, r.ID)
				to := outcomes[i]
				if to == E {
					if !errors.Is(err, ErrState) {
						t.Fatalf("err = %v, want ErrState", err)
					}
					to = from
				} else if err != nil {
					t.Fatalf("err = %v", err)
				}
				if got := stateOf(t, s, r.ID); got != to {
					t.Fatalf("state %v, want %v", got, to)
				}
				mustOK(t, s.Delete(r.ID)) // leave the queue empty for the next case
				if _, err := s.Get(r.ID); !errors.Is(err, ErrNotFound) {
					t.Fatalf("get after delete: %v", err)
				}
			})
		}
	}
	for op, fn := range ops {
		if op == "release" || op == "complete-ready" || op == "apply-ready" {
			continue
		}
		if err := fn(s, "missing"); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s of a missing id: %v, want ErrNotFound", op, err)
		}
	}
	if err := s.Delete("missing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete of a missing id: %v", err)
	}
}

// Apply makes acks and completions in order, in one commit, with an error per change.
func TestApplyOneCommit(t *testing.T) {
	s := openT(t, "", nil)
	a := appendT(t, s, rec("q", "a"))
	b := appendT(t, s, rec("q", "b"))
	d := &Delivery{At: time.Now(), Status: 200}
	txns := s.txns.Load()
	errs := s.Apply([]Change{
		{ID: a.ID, State: StateAcked},
		{ID: "missing", State: StateAcked},
		{ID: a.ID, State: StateDelivered, Delivery: d},
		{ID: b.ID, State: StateDead, Reason: "status 410"},
		{ID: a.ID, State: StateAcked}, // delivered by now: too late for an ack
	})
	if txns := s.txns.Load() - txns; txns != 1 {
		t.Fatalf("apply took %d transactions, want 1", txns)
	}
	if errs[0] != nil || !errors.Is(errs[1], ErrNotFound) || errs[2] != nil || errs[3] != nil || !errors.Is(errs[4], ErrState) {
		t.Fatalf("errors: %v", errs)
	}
	ga, _ := s.Get(a.ID)
	gb, _ := s.Get(b.ID)
	if ga.State != StateDelivered || ga.Attempts != 1 || gb.State != StateDead || gb.DeadReason != "status 410" {
		t.Fatalf("after apply: %+v / %+v", ga, gb)
	}
}

func mustOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestCompleteAndReplayFields(t *testing.T) {
	s := openT(t, "", nil)
	r := appendT(t, s, rec("q", "b"))
	d := Delivery{At: time.Now().Round(0), Status: 410, Millis: 7, Error: "gone"}
	mustOK(t, s.Complete(r.ID, StateDead, &d, "status 410"))
	got, _ := s.Get(r.ID)
	if got.State != StateDead || got.DeadReason != "status 410" || got.Attempts != 1 ||
		got.FinishedAt.IsZero() || len(got.Deliveries) != 1 || !reflect.DeepEqual(got.Deliveries[0], Delivery{At: time.Unix(0, d.At.UnixNano()), Status: 410, Millis: 7, Error: "gone"}) {
		t.Fatalf("after complete: %+v", got)
	}
	// A repeated report changes nothing (no second attempt counted).
	mustOK(t, s.Complete(r.ID, StateDead, &d, "status 410"))
	if got, _ := s.Get(r.ID); got.Attempts != 1 {
		t.Fatalf("repeated complete counted an attempt: %d", got.Attempts)
	}
	mustOK(t, s.Replay(r.ID))
	got, _ = s.Get(r.ID)
	if got.State != StateReady || !got.Replay || got.Attempts != 1 || got.DeadReason != "" ||
		!got.FinishedAt.IsZero() || got.NextAttempt.After(time.Now()) {
		t.Fatalf("after replay: %+v", got)
	}
	leased, _ := s.Lease("q", 1, time.Minute)
	if len(leased) != 1 || !leased[0].Replay || string(leased[0].Body) != "b" {
		t.Fatalf("replayed record not leased with its mark and body: %+v", leased)
	}
	mustOK(t, s.Complete(r.ID, StateDelivered, &Delivery{At: time.Now(), Status: 200}, "ignored"))
	got, _ = s.Get(r.ID)
	if got.State != StateDelivered || got.Replay || got.DeadReason != "" || got.Attempts != 2 {
		t.Fatalf("after delivering the replay: %+v", got)
	}
}

func TestNackAttemptsAndDeliveries(t *testing.T) {
	s := openT(t, "", nil)
	r := appendT(t, s, rec("q", "b"))
	for i := range 12 {
		leaseOne(t, s, "q", r.ID)
		mustOK(t, s.Nack(r.ID, time.Now(), &Delivery{At: time.Now(), Status: 500 + i}))
	}
	leaseOne(t, s, "q", r.ID)
	next := time.Now().Add(time.Hour)
	mustOK(t, s.Nack(r.ID, next, nil)) // agent full: no attempt
	got, _ := s.Get(r.ID)
	if got.Attempts != 12 || len(got.Deliveries) != MaxDeliveries || got.Deliveries[0].Status != 502 ||
		got.Deliveries[9].Status != 511 || !got.NextAttempt.Equal(next) {
		t.Fatalf("after 12 nacks: attempts %d, deliveries %+v, next %v", got.Attempts, got.Deliveries, got.NextAttempt)
	}
	if l, _ := s.Lease("q", 1, time.Minute); len(l) != 0 {
		t.Fatalf("leased a record not due for an hour")
	}
	if at, ok := s.NextDue("q"); !ok || !at.Equal(next) {
		t.Fatalf("next due = %v %v, want %v", at, ok, next)
	}
}

func TestClosed(t *testing.T) {
	s := openT(t, "", nil)
	r := appendT(t, s, rec("q", "b"))
	w := s.Wait("q")
	mustOK(t, s.Close())
	mustOK(t, s.Close())
	select {
	case <-w:
	default:
		t.Fatal("Close did not wake a waiter")
	}
	select {
	case <-s.Wait("q"):
	default:
		t.Fatal("Wait after Close blocks")
	}
	checks := map[string]error{
		"append": s.Append(context.Background(), rec("q", "x")),
		"ack":    s.Ack(r.ID),
		"delete": s.Delete(r.ID),
		"gc":     s.GC(),
	}
	_, checks["get"] = s.Get(r.ID)
	_, checks["lease"] = s.Lease("q", 1, time.Second)
	_, checks["list"] = s.List(Filter{})
	_, checks["has"] = s.Has(r.ID)
	_, checks["expire"] = s.Expire("q", time.Hour)
	for what, err := range checks {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after close: %v, want ErrClosed", what, err)
		}
	}
}

func TestOnCommitAndTxnSplit(t *testing.T) {
	var mu sync.Mutex
	var commits []int
	s := openT(t, "", func(o *Options) {
		o.OnCommit = func(n int, took time.Duration) {
			if took <= 0 {
				t.Errorf("commit took %v", took)
			}
			mu.Lock()
			commits = append(commits, n)
			mu.Unlock()
		}
	})
	// 2400 records with 900 bytes of headers each, rewritten by one request: more than one
	// Badger transaction takes under the small profile (its 2 MiB memtables).
	const count = 2400
	big := strings.Repeat("h", 900)
	ids := make([]string, count)
	var wg sync.WaitGroup
	for p := range 16 {
		wg.Go(func() {
			for i := p; i < count; i += 16 {
				r := rec("q", "b")
				r.Headers = []Header{{"X-Big", big}}
				r.ReceivedAt = time.Now().Add(-time.Hour)
				if err := s.Append(context.Background(), r); err != nil {
					t.Error(err)
					return
				}
				ids[i] = r.ID
			}
		})
	}
	wg.Wait()
	mu.Lock()
	commits = nil
	mu.Unlock()
	txns := s.txns.Load()
	n, err := s.Expire("q", time.Minute) // one request rewriting all of them
	if err != nil || n != count {
		t.Fatalf("expire = %d, %v", n, err)
	}
	if txns := s.txns.Load() - txns; txns < 2 {
		t.Fatalf("expire took %d transaction(s); the test needs a split", txns)
	}
	mu.Lock()
	if !slices.Equal(commits, []int{count}) {
		t.Fatalf("commits reported %v, want one of %d records", commits, count)
	}
	mu.Unlock()
	dir := s.opts.Dir
	mustOK(t, s.Close())
	s = openT(t, dir, nil)
	for _, id := range ids {
		if got, err := s.Get(id); err != nil || got.State != StateDead || got.DeadReason != "retention expired" {
			t.Fatalf("after reopen %s: %+v %v", id, got, err)
		}
	}
}

func TestAppendContextCancel(t *testing.T) {
	s := openT(t, "", nil)
	for range 20 {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		r := rec("q", "b")
		err := s.Append(ctx, r)
		ok, _ := s.Has(r.ID)
		switch {
		case err == nil && !ok:
			t.Fatal("append succeeded but the record is not there")
		case err != nil && !errors.Is(err, context.Canceled):
			t.Fatalf("append with a cancelled ctx: %v", err)
		case err != nil && ok:
			t.Fatal("append reported cancelled but stored the record")
		}
	}
}
