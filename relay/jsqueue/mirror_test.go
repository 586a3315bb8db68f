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
	m.add(2, meta{ID: "B", Queue: "e"}) // appended here: stream sequence 2
	if h, ok, behind := m.head("e", "default"); ok || behind != 2 {
		t.Fatalf("head %s (behind %d) before the watch delivered anything, want none, behind 2", h.meta.ID, behind)
	}
	wake := m.waiter("e")
	m.watched(1, &meta{ID: "A", Queue: "e"}) // another relay's, committed first
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
	m.watched(2, &meta{ID: "B", Queue: "e"})
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
