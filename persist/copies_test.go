package persist

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
)

// Copies are records of their own, in their own queues, stored in one commit with the
// original; a copy over its queue's quota stores none of them.
func TestAppendCopies(t *testing.T) {
	s := openT(t, "", func(o *Options) {
		o.Quota = func(q string) int64 {
			if q == "full" {
				return 1
			}
			return 0
		}
	})
	ctx := context.Background()
	r := rec("ep", "hello")
	if err := s.AppendCopies(ctx, r, []Copy{{Queue: "ep\x00a", Suffix: "~a"}, {Queue: "ep\x00b", Suffix: "~b"}}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{r.ID, r.ID + "~a", r.ID + "~b"} {
		got, err := s.Get(id)
		if err != nil || string(got.Body) != "hello" || got.State != StateReady {
			t.Fatalf("%s: %+v, %v", id, got, err)
		}
	}
	if got, _ := s.Get(r.ID + "~b"); got.Queue != "ep\x00b" {
		t.Fatalf("copy queue %q", got.Queue)
	}
	// Each copy leases and finishes on its own.
	ls, err := s.Lease("ep\x00a", 10, 60e9)
	if err != nil || len(ls) != 1 || ls[0].ID != r.ID+"~a" {
		t.Fatalf("lease a: %v, %v", ls, err)
	}
	if err := s.Complete(r.ID+"~a", StateDelivered, nil, ""); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(r.ID); got.State != StateReady {
		t.Fatalf("original after the copy finished: %v", got.State)
	}

	r2 := rec("ep", "x")
	err = s.AppendCopies(ctx, r2, []Copy{{Queue: "full", Suffix: "~f"}})
	if !errors.Is(err, ErrQuota) {
		t.Fatalf("copy over quota: %v, want ErrQuota", err)
	}
	if r2.ID != "" {
		if _, err := s.Get(r2.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("original of a refused copy stored: %v", err)
		}
	}
}

// Staged bodies: each copy writes its own parts, and each reads back byte-exact.
func TestAppendBodyCopies(t *testing.T) {
	s := openT(t, "", nil)
	body := bytes.Repeat([]byte("0123456789abcdef"), 3*stageFlush/16+7)
	for _, size := range []int{100, len(body)} {
		w, _ := s.NewBody()
		wc, _ := s.NewBody()
		if _, err := io.MultiWriter(w, wc).Write(body[:size]); err != nil {
			t.Fatal(err)
		}
		r := &Record{Queue: "ep"}
		if err := s.AppendBodyCopies(context.Background(), r, w, []Copy{{Queue: "ep\x00g", Suffix: "~g", Body: wc}}); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(r.ID); err != nil { // the copy keeps its own body
			t.Fatal(err)
		}
		rc, err := s.Body(r.ID + "~g")
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, body[:size]) {
			t.Fatalf("size %d: copy body %d bytes, %v", size, len(got), err)
		}
	}
}

// A record without a queue gives its copies their id, and is not stored itself.
func TestAppendCopiesOnly(t *testing.T) {
	s := openT(t, "", nil)
	r := &Record{Body: []byte("b")}
	if err := s.AppendCopies(context.Background(), r, []Copy{{Queue: "ep\x00a", Suffix: "~a"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(r.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("queueless record stored: %v", err)
	}
	if got, err := s.Get(r.ID + "~a"); err != nil || string(got.Body) != "b" {
		t.Fatalf("copy: %+v, %v", got, err)
	}
}
