package jsqueue

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ServerReady says whether the NATS server at url answers a JetStream request (within about
// a second): a freshly started server listens before its JetStream is up.
func ServerReady(url string) error {
	nc, err := nats.Connect(url, nats.Timeout(time.Second), nats.NoReconnect())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = js.AccountInfo(ctx)
	return err
}

// StreamWrites is how many messages the streams of the queue named name (DefaultName when
// "") have taken so far, webhooks and state changes apart: the difference over a run, per
// webhook, is what the cluster pays for each.
func StreamWrites(url, name string) (webhooks, states uint64, err error) {
	if name == "" {
		name = DefaultName
	}
	nc, err := nats.Connect(url, nats.Timeout(time.Second), nats.NoReconnect())
	if err != nil {
		return 0, 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	last := func(stream string) (uint64, error) {
		st, err := js.Stream(ctx, stream)
		if err != nil {
			return 0, err
		}
		return st.CachedInfo().State.LastSeq, nil
	}
	if webhooks, err = last(name + "_WEBHOOKS"); err != nil {
		return 0, 0, err
	}
	states, err = last("KV_" + name + "_STATE")
	return webhooks, states, err
}
