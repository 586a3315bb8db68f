// Package queuetest is the conformance suite of relay.Queue, written once against the
// interface: every implementation (Badger now, JetStream later) must pass it. An
// implementation's test calls Run with a function that opens it.
package queuetest

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/persist"
	"github.com/hookrelay/hookrelay/relay"
)

// Config is how the suite wants a queue opened.
type Config struct {
	// Quota returns an endpoint's stored-bytes limit (0 = none); nil = no quotas.
	Quota func(endpoint string) int64
	// Groups names an endpoint's consumer groups ("" : every group); nil = [default].
	Groups relay.GroupsFunc
}

// Open opens the queue kept at dir: an empty one for a new dir, the same one again (what was
// stored before Close) for a dir opened before. It fails t when it cannot open.
type Open func(t *testing.T, dir string, cfg Config) relay.Queue

const (
	group = relay.DefaultGroup
	ttl   = time.Minute
)

// Run runs the suite against the queues open opens.
func Run(t *testing.T, open Open) {
	fresh := func(t *testing.T, cfg Config) relay.Queue {
		q := open(t, t.TempDir(), cfg)
		t.Cleanup(func() { q.Close() })
		return q
	}
	t.Run("AppendIDs", func(t *testing.T) { testAppendIDs(t, fresh(t, Config{})) })
	t.Run("LeaseExclusive", func(t *testing.T) { testLeaseExclusive(t, fresh(t, Config{})) })
	t.Run("Transitions", func(t *testing.T) { testTransitions(t, fresh(t, Config{})) })
	t.Run("Quota", func(t *testing.T) {
		testQuota(t, fresh(t, Config{Quota: func(ep string) int64 {
			if ep == "small" {
				return 4000
			}
			return 0
		}}))
	})
	t.Run("List", func(t *testing.T) { testList(t, fresh(t, Config{})) })
	t.Run("Bodies", func(t *testing.T) { testBodies(t, fresh(t, Config{})) })
	t.Run("AppendFrom", func(t *testing.T) { testAppendFrom(t, fresh(t, Config{})) })
	t.Run("Replay", func(t *testing.T) { testReplay(t, fresh(t, Config{})) })
	t.Run("DeleteExpire", func(t *testing.T) { testDeleteExpire(t, fresh(t, Config{})) })
	t.Run("DedupSeed", func(t *testing.T) { testDedupSeed(t, fresh(t, Config{})) })
	t.Run("Ready", func(t *testing.T) { testReady(t, fresh(t, Config{})) })
	t.Run("LeaseHead", func(t *testing.T) { testLeaseHead(t, fresh(t, Config{})) })
	t.Run("LeaseHeadDurable", func(t *testing.T) { testLeaseHeadDurable(t, open) })
	t.Run("LeaseTokens", func(t *testing.T) { testLeaseTokens(t, fresh(t, Config{})) })
	t.Run("UnknownGroup", func(t *testing.T) { testUnknownGroup(t, fresh(t, Config{})) })
	t.Run("Durable", func(t *testing.T) { testDurable(t, open) })
	t.Run("Groups", func(t *testing.T) { testGroups(t, fresh(t, groupsConfig())) })
}

// rec is a webhook for endpoint with body.
func rec(endpoint, body string) *persist.Record {
	return &persist.Record{Queue: endpoint, Method: "POST", Path: "/p", Query: "a=1&a=2",
		Headers: []persist.Header{{Name: "X-A", Value: "1"}, {Name: "X-A", Value: "2"}}, Body: []byte(body)}
}

func appendT(t *testing.T, q relay.Queue, r *persist.Record) *persist.Record {
	t.Helper()
	if err := q.Append(t.Context(), r); err != nil {
		t.Fatalf("append: %v", err)
	}
	return r
}

func ids(recs []*persist.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}

func lease(t *testing.T, q relay.Queue, ep string, max int) []*persist.Record {
	t.Helper()
	recs, err := q.Lease(t.Context(), group, ep, max, ttl)
	if err != nil {
		t.Fatalf("lease: %v", err)
	}
	return recs
}

// get is q.Get; where q is a relay.MetaReader, its Meta must give the same record less the
// body.
func get(t *testing.T, q relay.Queue, id string) *persist.Record {
	t.Helper()
	r, err := q.Get(t.Context(), id)
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	if m, ok := q.(relay.MetaReader); ok {
		meta, err := m.Meta(t.Context(), id)
		if err != nil {
			t.Fatalf("meta %s: %v (get found it)", id, err)
		}
		want := *r
		want.Body = nil
		if !reflect.DeepEqual(meta, &want) {
			t.Fatalf("meta %s: %+v\nbut get: %+v", id, meta, &want)
		}
	}
	return r
}

// apply makes one change and returns its error.
func apply(q relay.Queue, c persist.Change) error {
	return q.Apply(context.Background(), group, []persist.Change{c})[0]
}

// eventually polls cond every 10ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// leasesOf maps leased records' ids to their leases, as Release and Extend take them.
func leasesOf(recs ...*persist.Record) map[string]uint64 {
	m := make(map[string]uint64, len(recs))
	for _, r := range recs {
		m[r.ID] = r.Lease
	}
	return m
}
