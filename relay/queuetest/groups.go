package queuetest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"testing"

	"github.com/hookrelay/hookrelay/persist"
	"github.com/hookrelay/hookrelay/relay"
)

// groupsConfig declares: ep [default, audit], solo [default], aud [audit].
func groupsConfig() Config {
	return Config{Groups: func(ep string) []string {
		switch ep {
		case "":
			return []string{relay.DefaultGroup, "audit"}
		case "ep":
			return []string{relay.DefaultGroup, "audit"}
		case "aud":
			return []string{"audit"}
		}
		return []string{relay.DefaultGroup}
	}}
}

func leaseIn(t *testing.T, q relay.Queue, g, ep string) []*persist.Record {
	t.Helper()
	recs, err := q.Lease(t.Context(), g, ep, 10, ttl)
	if err != nil {
		t.Fatalf("lease %s/%s: %v", g, ep, err)
	}
	return recs
}

func applyIn(t *testing.T, q relay.Queue, g string, c persist.Change) {
	t.Helper()
	if err := q.Apply(t.Context(), g, []persist.Change{c})[0]; err != nil {
		t.Fatalf("apply %s %v: %v", g, c.State, err)
	}
}

func wantGroups(t *testing.T, q relay.Queue, id string, state persist.State, groups map[string]persist.State) {
	t.Helper()
	r := get(t, q, id)
	if r.State != state || !maps.Equal(r.Groups, groups) {
		t.Fatalf("%s: state %v groups %v, want %v %v", id, r.State, r.Groups, state, groups)
	}
}

// Every group gets every webhook of its endpoint once, with its own state; the webhook's
// state is the least advanced; replay, dead letters and delete act per group.
func testGroups(t *testing.T, q relay.Queue) {
	ctx := t.Context()
	const audit = "audit"
	def := relay.DefaultGroup
	r := appendT(t, q, rec("ep", "one"))
	for _, g := range []string{def, audit} {
		got := leaseIn(t, q, g, "ep")
		if len(got) != 1 || got[0].ID != r.ID || got[0].Queue != "ep" {
			t.Fatalf("group %s leased %v, want %s", g, ids(got), r.ID)
		}
		if again := leaseIn(t, q, g, "ep"); len(again) != 0 {
			t.Fatalf("group %s leased it twice", g)
		}
	}
	applyIn(t, q, def, persist.Change{ID: r.ID, State: persist.StateAcked})
	applyIn(t, q, def, persist.Change{ID: r.ID, State: persist.StateDelivered, Delivery: &persist.Delivery{Status: 200}})
	wantGroups(t, q, r.ID, persist.StateLeased, map[string]persist.State{def: persist.StateDelivered, audit: persist.StateLeased})
	applyIn(t, q, audit, persist.Change{ID: r.ID, State: persist.StateAcked})
	wantGroups(t, q, r.ID, persist.StateAcked, map[string]persist.State{def: persist.StateDelivered, audit: persist.StateAcked})
	applyIn(t, q, audit, persist.Change{ID: r.ID, State: persist.StateDelivered})
	wantGroups(t, q, r.ID, persist.StateDelivered, map[string]persist.State{def: persist.StateDelivered, audit: persist.StateDelivered})

	// Dead in one group: listed as dead, replayed for that group only.
	d := appendT(t, q, rec("ep", "two"))
	leaseIn(t, q, audit, "ep")
	applyIn(t, q, audit, persist.Change{ID: d.ID, State: persist.StateDead, Reason: "410"})
	dead, err := q.List(ctx, persist.Filter{Queue: "ep", State: persist.StateDead})
	if err != nil || len(dead) != 1 || dead[0].ID != d.ID {
		t.Fatalf("dead list: %v, %v; want %s", ids(dead), err, d.ID)
	}
	if mine, _ := q.List(ctx, persist.Filter{Queue: "ep", Group: audit}); len(mine) != 2 || mine[0].Groups[audit] != persist.StateDead {
		t.Fatalf("audit's list: %v %v", ids(mine), mine)
	}
	if n, err := q.ReplayDead(ctx, audit, "ep"); n != 1 || err != nil {
		t.Fatalf("replay dead audit: %d, %v", n, err)
	}
	wantGroups(t, q, d.ID, persist.StateReady, map[string]persist.State{def: persist.StateReady, audit: persist.StateReady})
	// Replay without a group: every group that finished it.
	if err := q.Replay(ctx, "", r.ID); err != nil {
		t.Fatal(err)
	}
	wantGroups(t, q, r.ID, persist.StateReady, map[string]persist.State{def: persist.StateReady, audit: persist.StateReady})
	if err := q.Delete(ctx, audit, d.ID); err != nil {
		t.Fatal(err)
	}
	wantGroups(t, q, d.ID, persist.StateReady, map[string]persist.State{def: persist.StateReady})
	if err := q.Delete(ctx, "", d.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Get(ctx, d.ID); !errors.Is(err, persist.ErrNotFound) {
		t.Fatalf("deleted everywhere: %v", err)
	}

	// An endpoint without the group holds no copy for it, nor refuses its own.
	s := appendT(t, q, rec("solo", "s"))
	wantGroups(t, q, s.ID, persist.StateReady, map[string]persist.State{def: persist.StateReady})
	if _, err := q.Lease(ctx, audit, "solo", 1, ttl); !errors.Is(err, persist.ErrInvalid) {
		t.Fatalf("lease of an undeclared group: %v, want ErrInvalid", err)
	}

	// An endpoint without the default group, with a body in parts.
	body := bytes.Repeat([]byte("0123456789"), 300_000)
	a := &persist.Record{Queue: "aud", Method: "POST"}
	if err := q.AppendFrom(ctx, a, bytes.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	wantGroups(t, q, a.ID, persist.StateReady, map[string]persist.State{audit: persist.StateReady})
	if _, err := q.Lease(ctx, def, "aud", 1, ttl); !errors.Is(err, persist.ErrInvalid) {
		t.Fatalf("lease of default on aud: %v, want ErrInvalid", err)
	}
	if got := leaseIn(t, q, audit, "aud"); len(got) != 1 || got[0].ID != a.ID {
		t.Fatalf("aud leased %v", ids(got))
	}
	rc, err := q.Body(context.Background(), a.ID)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(b, body) {
		t.Fatalf("body: %d bytes, %v", len(b), err)
	}
}
