package jsqueue

import (
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/persist"
)

// An ordered endpoint's head is the stream's first webhook: one this relay appended is not
// its head before the stream watch reached it, since another relay may have appended an
// earlier one that the watch has not delivered yet; the watch reaching it wakes the endpoint.
func TestMirrorHeadWaitsForTheWatch(t *testing.T) {
	m := newMirror([]string{"default"})
	m.add(2, meta{ID: "B", Queue: "e"}, nil) // appended here: stream sequence 2
	if h, ok, behind := m.head("e", "default"); ok || behind != 2 {
		t.Fatalf("head %s (behind %d) before the watch delivered anything, want none, behind 2", h.meta.ID, behind)
	}
	wake := m.waiter("e")
	m.watched(1, &meta{ID: "A", Queue: "e"}, nil) // another relay's, committed first
	if h, ok, _ := m.head("e", "default"); !ok || h.meta.ID != "A" {
		t.Fatalf("head %v %v after the watch delivered A, want A", h.meta.ID, ok)
	}
	<-wake
	m.set("A", "default", slot{g: gstate{State: persist.StateAcked}, rev: 1}) // acked: no longer the head
	if h, ok, _ := m.head("e", "default"); ok {
		t.Fatalf("head %s while the watch has not reached B, want none", h.meta.ID)
	}
	if m.waitThrough(t.Context(), 2, time.Millisecond) {
		t.Fatal("waitThrough(2) reported the watch there before it was")
	}
	reached := make(chan bool)
	go func() { reached <- m.waitThrough(t.Context(), 2, time.Minute) }()
	wake = m.waiter("e")
	m.watched(2, &meta{ID: "B", Queue: "e"}, nil)
	select {
	case <-wake:
	default:
		t.Fatal("the watch reaching B did not wake the endpoint")
	}
	if !<-reached {
		t.Fatal("waitThrough(2) gave up although the watch got there")
	}
	if h, ok, _ := m.head("e", "default"); !ok || h.meta.ID != "B" {
		t.Fatalf("head %v %v after the watch reached B, want B", h.meta.ID, ok)
	}
}

// Leases, wake-ups and the quota look only at an endpoint's open webhooks; one finished and
// replayed is open again in its stream place, and a body is held only while open.
func TestMirrorOpenList(t *testing.T) {
	m := newMirror([]string{"default", "audit"})
	for i, id := range []string{"A", "B", "C"} {
		m.watched(uint64(i+1), &meta{ID: id, Queue: "e", Size: 10 << i}, []byte(id))
	}
	ids := func() string {
		var s string
		for _, c := range m.pick("e", "default", func(*gstate) bool { return true }, 10) {
			s += c.meta.ID + string(c.body)
		}
		return s
	}
	pending := func() int64 { m.mu.Lock(); defer m.mu.Unlock(); return m.pendingBytesLocked("e") }
	if got := ids(); got != "AABBCC" || pending() != 70 {
		t.Fatalf("open %q, %d bytes pending; want AABBCC, 70", got, pending())
	}
	m.set("B", "default", slot{g: gstate{State: persist.StateDelivered}, rev: 1})
	if got := ids(); got != "AABBCC" || pending() != 70 {
		t.Fatalf("B finished in one group of two: open %q, %d bytes; want AABBCC, 70", got, pending())
	}
	m.set("B", "audit", slot{g: gstate{State: persist.StateDead}, rev: 2})
	if got := ids(); got != "AACC" || pending() != 50 {
		t.Fatalf("B finished in both groups: open %q, %d bytes; want AACC, 50", got, pending())
	}
	m.set("B", "default", slot{g: gstate{State: persist.StateReady, Replay: true}, rev: 3})
	if got := ids(); got != "AABCC" || pending() != 70 {
		t.Fatalf("B replayed: open %q, %d bytes; want AABCC (its body read again), 70", got, pending())
	}
	m.set("A", "default", slot{g: gstate{Deleted: true}, rev: 4})
	m.set("A", "audit", slot{g: gstate{Deleted: true}, rev: 5})
	if got := ids(); got != "BCC" || pending() != 60 || m.bodyBytes != 1 {
		t.Fatalf("A deleted: open %q, %d bytes, %d body bytes held; want BCC, 60, 1", got, pending(), m.bodyBytes)
	}
}
