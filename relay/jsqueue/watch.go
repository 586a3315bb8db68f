package jsqueue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// start watches the bucket and the stream into the mirror, waits until both are caught up
// with what they held at start, then runs the retention sweep.
func (q *Queue) start(ctx context.Context) error {
	wctx, cancel := context.WithCancel(context.Background())
	q.cancel = cancel

	var kw jetstream.KeyWatcher
	err := retry(ctx, func(context.Context) error {
		var err error
		kw, err = q.kv.WatchAll(wctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("watch state: %w", err)
	}
	q.kw = kw
	kvReady := make(chan struct{})
	q.wg.Go(func() {
		ready := sync.OnceFunc(func() { close(kvReady) })
		defer ready()
		for e := range kw.Updates() {
			if e == nil { // the initial values are all in
				ready()
				continue
			}
			q.onState(e)
		}
	})

	// The sequence of the stream's last webhook now: the mirror is caught up once it saw it.
	var target uint64
	err = retry(ctx, func(ctx context.Context) error {
		last, err := q.stream.GetLastMsgForSubject(ctx, q.prefix+".wh.>")
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			return nil
		case err != nil:
			return err
		}
		target = last.Sequence
		return nil
	})
	if err != nil {
		return fmt.Errorf("last webhook: %w", err)
	}
	streamReady := make(chan struct{})
	readyOnce := sync.OnceFunc(func() { close(streamReady) })
	if target == 0 {
		readyOnce()
	}
	var cons jetstream.Consumer
	err = retry(ctx, func(ctx context.Context) error {
		var err error
		cons, err = q.js.OrderedConsumer(ctx, q.stream.CachedInfo().Config.Name, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{q.prefix + ".wh.>"}, HeadersOnly: true,
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("watch stream: %w", err)
	}
	q.cc, err = cons.Consume(func(msg jetstream.Msg) {
		md, err := msg.Metadata()
		if err != nil {
			return
		}
		var mt meta
		if err := json.Unmarshal([]byte(msg.Headers().Get(hdrMeta)), &mt); err != nil || mt.ID == "" {
			q.log.Warn("jetstream queue: unreadable webhook message", "seq", md.Sequence.Stream, "err", err)
			q.m.watched(md.Sequence.Stream, nil)
		} else {
			q.m.watched(md.Sequence.Stream, &mt)
		}
		if md.Sequence.Stream >= target {
			readyOnce()
		}
	})
	if err != nil {
		return fmt.Errorf("watch stream: %w", err)
	}
	for _, ch := range []chan struct{}{kvReady, streamReady} {
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("catch up: %w", ctx.Err())
		}
	}
	q.m.mu.Lock()
	q.m.live = true
	q.m.mu.Unlock()
	q.ids.After(q.m.maxID(), time.Now())

	q.wg.Go(func() { q.sweepLoop(wctx) })
	return nil
}

// onState applies a bucket change to the mirror.
func (q *Queue) onState(e jetstream.KeyValueEntry) {
	group, id, ok := parseKey(e.Key())
	if !ok {
		return
	}
	s := slot{rev: e.Revision()}
	if e.Operation() != jetstream.KeyValuePut {
		s.g.Deleted = true
	} else {
		g, err := decodeState(e.Value())
		if err != nil {
			q.log.Warn("jetstream queue: unreadable state", "key", e.Key(), "err", err)
			return
		}
		s.g = g
	}
	q.m.set(id, group, s)
}
