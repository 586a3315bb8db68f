package jsqueue_test

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/natstest"
	"github.com/hookrelay/hookrelay/relay"
	"github.com/hookrelay/hookrelay/relay/jsqueue"
	"github.com/hookrelay/hookrelay/relay/queuetest"
)

var _ relay.Queue = (*jsqueue.Queue)(nil)

// nameFor names a queue's stream and bucket after the suite's dir: the same dir opens the
// same queue again.
func nameFor(dir string) string {
	h := sha256.Sum256([]byte(dir))
	return "T" + hex.EncodeToString(h[:8])
}

// The JetStream queue passes the Queue conformance suite on a real one-node nats-server.
func TestConformance(t *testing.T) {
	c := natstest.Start(t, 1)
	queuetest.Run(t, func(t *testing.T, dir string, cfg queuetest.Config) relay.Queue {
		o := jsqueue.Options{URLs: c.URLs(), Replicas: 1, Name: nameFor(dir),
			Quota: cfg.Quota, GCInterval: time.Hour, GroupsOf: cfg.Groups}
		if cfg.Groups != nil {
			o.Groups = cfg.Groups("")
		}
		q, err := jsqueue.Open(t.Context(), o)
		if err != nil {
			t.Fatalf("open jetstream queue: %v", err)
		}
		return q
	})
}
