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
	// Catching up reads headers only: finished webhooks, kept for keep_done, need no bodies.
	var catchUp jetstream.ConsumeContext
	if target > 0 {
		catchUp, err = q.watchStream(ctx, 0, true, func(seq uint64) {
			if seq >= target {
				readyOnce()
			}
		})
		if err != nil {
			return err
		}
		q.cc = catchUp // for Close, should catching up fail
	}
	for _, ch := range []chan struct{}{kvReady, streamReady} {
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("catch up: %w", ctx.Err())
		}
	}
	// Caught up: from here on the watch carries bodies as well, so that leasing a webhook
	// appended on another relay needs no read of its own.
	if catchUp != nil {
		catchUp.Stop()
		<-catchUp.Closed()
		q.cc = nil
	}
	q.cc, err = q.watchStream(ctx, target+1, false, nil)
	if err != nil {
		return err
	}
	q.m.mu.Lock()
	q.m.live = true
	q.m.mu.Unlock()
	q.ids.After(q.m.maxID(), time.Now())

	q.sweepDone = make(chan struct{})
	q.wg.Go(func() {
		defer close(q.sweepDone)
		q.sweepLoop(wctx)
	})
	return nil
}

// onState applies a bucket change to the mirror.
func (q *Queue) onState(e jetstream.KeyValueEntry) {
	group, id, ok := parseKey(e.Key())
	if !ok {
		return
	}
	if q.m.has(id, group, e.Revision()) {
		return // this relay's own write, in the mirror since its answer came: no need to decode it
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

// watchStream feeds the stream's webhook messages from sequence from (0: the first) into the
// mirror, with their bodies unless headersOnly, and tells seen each sequence (nil: nobody).
func (q *Queue) watchStream(ctx context.Context, from uint64, headersOnly bool, seen func(uint64)) (jetstream.ConsumeContext, error) {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{q.prefix + ".wh.>"}, HeadersOnly: headersOnly}
	if from > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, from
	}
	var cons jetstream.Consumer
	err := retry(ctx, func(ctx context.Context) error {
		var err error
		cons, err = q.js.OrderedConsumer(ctx, q.stream.CachedInfo().Config.Name, cfg)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("watch stream: %w", err)
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		md, err := msg.Metadata()
		if err != nil {
			return
		}
		var mt meta
		if err := json.Unmarshal([]byte(msg.Headers().Get(hdrMeta)), &mt); err != nil || mt.ID == "" {
			q.log.Warn("jetstream queue: unreadable webhook message", "seq", md.Sequence.Stream, "err", err)
			q.m.watched(md.Sequence.Stream, nil, nil)
		} else {
			var body []byte
			if !headersOnly && mt.Parts == 0 {
				body = append([]byte{}, msg.Data()...)
			}
			q.m.watched(md.Sequence.Stream, &mt, body)
		}
		if seen != nil {
			seen(md.Sequence.Stream)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("watch stream: %w", err)
	}
	return cc, nil
}
