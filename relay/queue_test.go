package relay_test

import (
	"testing"

	"github.com/hookrelay/hookrelay/persist"
	"github.com/hookrelay/hookrelay/relay"
	"github.com/hookrelay/hookrelay/relay/queuetest"
)

// The embedded Badger queue passes the Queue conformance suite.
func TestBadgerQueueConformance(t *testing.T) {
	queuetest.Run(t, func(t *testing.T, dir string, cfg queuetest.Config) relay.Queue {
		q, err := relay.OpenBadgerQueueGroups(persist.Options{Dir: dir, Small: true, Quota: cfg.Quota}, cfg.Groups)
		if err != nil {
			t.Fatalf("open badger queue: %v", err)
		}
		return q
	})
}
