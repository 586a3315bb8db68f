package persist

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"
)

func TestLeaseOldestFirstWithBodies(t *testing.T) {
	s := openT(t, "", nil)
	var ids []string
	for i := range 5 {
		ids = append(ids, appendT(t, s, rec("q", fmt.Sprint("body", i))).ID)
	}
	appendT(t, s, rec("other", "not this queue"))
	mustOK(t, s.Nack(ids[0], time.Now().Add(time.Hour), nil)) // not due

	got, err := s.Lease("q", 3, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("leased %d, want 3", len(got))
	}
	for i, r := range got {
		if r.ID != ids[i+1] || string(r.Body) != fmt.Sprint("body", i+1) || r.State != StateLeased || r.Queue != "q" {
			t.Fatalf("lease %d = %+v, want %s with its body", i, r, ids[i+1])
		}
	}
	if st := stateOf(t, s, ids[1]); st != StateLeased {
		t.Fatalf("get shows %v for a leased record", st)
	}
	rest, _ := s.Lease("q", 10, time.Minute)
	if len(rest) != 1 || rest[0].ID != ids[4] {
		t.Fatalf("second lease = %+v, want only %s", rest, ids[4])
	}
	if more, _ := s.Lease("q", 10, time.Minute); len(more) != 0 {
		t.Fatalf("leased %d records twice", len(more))
	}
	if _, ok := s.NextDue("q"); !ok {
		t.Fatal("no next due with a record waiting an hour")
	}
	s.Release(ids[2])
	again, _ := s.Lease("q", 10, time.Minute)
	if len(again) != 1 || again[0].ID != ids[2] {
		t.Fatalf("after release leased %+v, want %s", again, ids[2])
	}
	if at, ok := s.NextDue("nothing"); ok {
		t.Fatalf("next due of an unknown queue: %v", at)
	}
}

func TestLeaseExpiryWakesWaiters(t *testing.T) {
	s := openT(t, "", nil)
	r := appendT(t, s, rec("q", "b"))
	leased, _ := s.Lease("q", 1, 50*time.Millisecond)
	if len(leased) != 1 {
		t.Fatalf("leased %d", len(leased))
	}
	w := s.Wait("q")
	select {
	case <-w:
	case <-time.After(5 * time.Second):
		t.Fatal("lease expiry did not wake Wait")
	}
	if st := stateOf(t, s, r.ID); st != StateReady {
		t.Fatalf("after expiry state %v", st)
	}
	again, _ := s.Lease("q", 1, time.Minute)
	if len(again) != 1 || again[0].ID != r.ID {
		t.Fatalf("expired lease not leasable again: %+v", again)
	}
}

func TestWaitWakesOnChanges(t *testing.T) {
	s := openT(t, "", nil)
	r := appendT(t, s, rec("q", "b"))
	leaseOne(t, s, "q", r.ID)
	steps := []struct {
		name string
		do   func() error
	}{
		{"append", func() error { return s.Append(context.Background(), rec("q", "x")) }},
		{"release", func() error { s.Release(r.ID); return nil }},
		{"nack", func() error { leaseOne2(s, "q"); return s.Nack(r.ID, time.Now().Add(time.Hour), nil) }},
		{"replay", func() error {
			if err := s.Complete(r.ID, StateDead, nil, "x"); err != nil {
				return err
			}
			return s.Replay(r.ID)
		}},
	}
	for _, st := range steps {
		w := s.Wait("q")
		select {
		case <-w:
			t.Fatalf("before %s: Wait already closed", st.name)
		default:
		}
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		select {
		case <-w:
		default:
			t.Fatalf("%s did not wake Wait", st.name)
		}
	}
	w := s.Wait("q")
	mustOK(t, s.Complete(r.ID, StateDelivered, nil, "")) // nothing new ready
	select {
	case <-w:
		t.Fatal("delivering a record woke Wait")
	default:
	}
}

// leaseOne2 leases whatever is due in queue (for steps that need a lease, not a check).
func leaseOne2(s *Store, queue string) { s.Lease(queue, 100, time.Minute) }

func TestQuota(t *testing.T) {
	s := openT(t, "", func(o *Options) {
		o.Quota = func(q string) int64 {
			if q == "limited" {
				return 10 << 10
			}
			return 0
		}
	})
	body := string(make([]byte, 4<<10))
	a := appendT(t, s, &Record{Queue: "limited", Body: []byte(body)})
	appendT(t, s, &Record{Queue: "limited", Body: []byte(body)})
	over := &Record{Queue: "limited", Body: []byte(body)}
	if err := s.Append(context.Background(), over); !errors.Is(err, ErrQuota) {
		t.Fatalf("append over quota: %v, want ErrQuota", err)
	}
	appendT(t, s, &Record{Queue: "free", Body: make([]byte, 64<<10)})
	if st := s.Stats(); len(st) != 2 || st[1].Queue != "limited" || st[1].Pending != 2 || st[1].Bytes != 8<<10 {
		t.Fatalf("stats after refusal: %+v", st)
	}
	mustOK(t, s.Complete(a.ID, StateDelivered, nil, "")) // frees its bytes
	appendT(t, s, &Record{Queue: "limited", Body: []byte(body)})

	// Concurrent appends share batches; the quota still holds across them.
	s2 := openT(t, "", func(o *Options) { o.Quota = func(string) int64 { return 8 << 10 } })
	errs := make(chan error, 16)
	for range 16 {
		go func() { errs <- s2.Append(context.Background(), &Record{Queue: "q", Body: make([]byte, 1<<10)}) }()
	}
	ok := 0
	for range 16 {
		switch err := <-errs; {
		case err == nil:
			ok++
		case !errors.Is(err, ErrQuota):
			t.Fatal(err)
		}
	}
	if ok != 8 {
		t.Fatalf("%d appends of 1 KiB fit an 8 KiB quota", ok)
	}
}

func TestDiskFullRefusesAppends(t *testing.T) {
	free, ok := diskFree(t.TempDir())
	if !ok {
		t.Skip("free space unknown on this OS")
	}
	s := openT(t, "", func(o *Options) { o.MinFree = free + 1<<40 })
	if err := s.Append(context.Background(), rec("q", "b")); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("append with too little free space: %v, want ErrDiskFull", err)
	}
	if st := s.Stats(); len(st) != 0 {
		t.Fatalf("refused append left %+v", st)
	}
	if !errors.Is(mapErr(fmt.Errorf("write: %w", syscall.ENOSPC)), ErrDiskFull) {
		t.Fatal("ENOSPC does not map to ErrDiskFull")
	}
}
