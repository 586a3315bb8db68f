package natstest_test

import (
	"testing"

	"github.com/hookrelay/hookrelay/internal/natstest"
	"github.com/nats-io/nats.go"
)

// A 3-node cluster starts, answers, and a killed node comes back.
func TestCluster(t *testing.T) {
	c := natstest.Start(t, 3)
	c.Kill(1)
	nc, err := nats.Connect(c.Nodes[0].URL())
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	c.Restart(1)
}
