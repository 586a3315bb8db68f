package jsqueue

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/hookrelay/hookrelay/persist"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Append publishes r and returns after JetStream acknowledged it stored with the stream's
// replicas. A body larger than one message holds is published first, in parts; the webhook
// message comes last, so a webhook anyone sees has its whole body. Ids are this process's
// monotonic ULIDs, also the Nats-Msg-Id: a retried publish is stored once.
func (q *Queue) Append(ctx context.Context, r *persist.Record) error {
	if err := q.check(); err != nil {
		return fmt.Errorf("append: %w", err)
	}
	if r.Queue == "" {
		return fmt.Errorf("append: no endpoint: %w", persist.ErrInvalid)
	}
	if r.ID != "" && !validID(r.ID) {
		return fmt.Errorf("append: id %q: %w", r.ID, persist.ErrInvalid)
	}
	now := time.Now()
	if r.ReceivedAt.IsZero() {
		r.ReceivedAt = now
	}
	r.BodyLen = int64(len(r.Body))
	r.Size = int64(len(r.Body))
	for _, h := range r.Headers {
		r.Size += int64(len(h.Name) + len(h.Value))
	}
	var quota int64
	if q.opts.Quota != nil {
		quota = q.opts.Quota(r.Queue)
	}
	if !q.m.reserve(r.Queue, r.Size, quota) {
		return fmt.Errorf("append to %s: %w", r.Queue, persist.ErrQuota)
	}
	defer q.m.unreserve(r.Queue, r.Size)
	if r.ID == "" {
		r.ID = q.ids.Next(now)
	}

	parts := 0
	if len(r.Body) > q.maxPart {
		for off := 0; off < len(r.Body); off += q.maxPart {
			chunk := r.Body[off:min(off+q.maxPart, len(r.Body))]
			part := &nats.Msg{Subject: q.subjPart(r.ID, parts), Data: chunk}
			if _, err := q.publish(ctx, part, r.ID+"."+strconv.Itoa(parts)); err != nil {
				return fmt.Errorf("append body part: %w", err)
			}
			parts++
		}
	}
	mt := metaOf(r, parts)
	mt.Groups = q.groupsOf(r.Queue)
	hdr, err := json.Marshal(mt)
	if err != nil {
		return fmt.Errorf("append: %w", err)
	}
	msg := &nats.Msg{Subject: q.subjWebhook(r.Queue), Header: nats.Header{}}
	msg.Header.Set(hdrMeta, string(hdr))
	if parts == 0 {
		msg.Data = r.Body
	}
	ack, err := q.publish(ctx, msg, r.ID)
	if err != nil {
		return fmt.Errorf("append: %w", err)
	}
	r.State = persist.StateReady
	var body []byte // the mirror's copy: the caller keeps r.Body
	if parts == 0 {
		body = append([]byte{}, r.Body...)
	}
	q.m.add(ack.Sequence, mt, body)
	return nil
}

// publishPatience bounds how long publish keeps asking once a try went unanswered.
const publishPatience = 20 * time.Second

// publish publishes msg with its Nats-Msg-Id, asking again while no answer comes: during a
// leader election a request may go unanswered, and the id keeps a publish that was stored
// after all from being stored twice. Tries that no stream received (no responders) end it
// after the third: nothing was stored, and the caller says so (503). But once a try went
// unanswered, the message may be stored — the leader took it and died before it answered,
// and the new leader has it — and a "no responders" during the election that follows proves
// nothing; so publish asks on, for up to publishPatience, until an answer tells (a
// duplicate's answer carries the first one's sequence). A soak's kill -9 of a NATS server
// once had a relay answer 503 for a webhook that was then delivered.
func (q *Queue) publish(ctx context.Context, msg *nats.Msg, id string) (*jetstream.PubAck, error) {
	start := time.Now()
	unanswered := false
	for try := 1; ; try++ {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ack, err := q.js.PublishMsg(actx, msg, jetstream.WithMsgID(id))
		cancel()
		timedOut := errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout)
		unanswered = unanswered || timedOut
		switch {
		case err == nil || ctx.Err() != nil || !timedOut && !errors.Is(err, jetstream.ErrNoStreamResponse):
			return ack, err
		case !unanswered && try >= 3:
			return ack, err
		case unanswered && time.Since(start) >= publishPatience:
			return ack, fmt.Errorf("%w (after a try that went unanswered: it may be stored)", err)
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(min(time.Duration(try)*200*time.Millisecond, time.Second)):
		}
	}
}

// Get returns a webhook as this relay sees the cluster, with its body when it is not in parts.
func (q *Queue) Get(ctx context.Context, id string) (*persist.Record, error) {
	r, seq, parts, err := q.lookup(id)
	if err != nil || parts > 0 {
		return r, err
	}
	if r.Body, err = q.inlineBody(ctx, seq); err != nil {
		return nil, fmt.Errorf("get %s: %w", id, err)
	}
	return r, nil
}

// Meta is Get without the body, from this relay's mirror (relay.MetaReader).
func (q *Queue) Meta(_ context.Context, id string) (*persist.Record, error) {
	r, _, _, err := q.lookup(id)
	return r, err
}

// lookup is id as the mirror holds it: the record without its body, its stream sequence and
// how many parts its body is in.
func (q *Queue) lookup(id string) (*persist.Record, uint64, int, error) {
	if err := q.check(); err != nil {
		return nil, 0, 0, fmt.Errorf("get: %w", err)
	}
	r, seq, parts, ok := q.m.record(id, time.Now())
	if !ok {
		return nil, 0, 0, fmt.Errorf("get %s: %w", id, persist.ErrNotFound)
	}
	return r, seq, parts, nil
}

func (q *Queue) inlineBody(ctx context.Context, seq uint64) ([]byte, error) {
	m, err := q.stream.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, persist.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if m.Data == nil {
		return []byte{}, nil
	}
	return m.Data, nil
}

// Body reads a webhook's body, part by part when it is stored in parts.
func (q *Queue) Body(ctx context.Context, id string) (io.ReadCloser, error) {
	if err := q.check(); err != nil {
		return nil, fmt.Errorf("body: %w", err)
	}
	_, seq, parts, ok := q.m.record(id, time.Now())
	if !ok {
		return nil, fmt.Errorf("body %s: %w", id, persist.ErrNotFound)
	}
	if parts == 0 {
		b, err := q.inlineBody(ctx, seq)
		if err != nil {
			return nil, fmt.Errorf("body %s: %w", id, err)
		}
		return io.NopCloser(bytes.NewReader(b)), nil
	}
	return &partReader{q: q, ctx: ctx, id: id, parts: parts}, nil
}

// partReader reads a body's parts one message at a time.
type partReader struct {
	q     *Queue
	ctx   context.Context
	id    string
	parts int
	next  int
	cur   []byte
}

func (p *partReader) Read(b []byte) (int, error) {
	for len(p.cur) == 0 {
		if p.next == p.parts {
			return 0, io.EOF
		}
		m, err := p.q.stream.GetLastMsgForSubject(p.ctx, p.q.subjPart(p.id, p.next))
		if err != nil {
			return 0, fmt.Errorf("body %s part %d: %w", p.id, p.next, err)
		}
		p.cur = m.Data
		p.next++
	}
	n := copy(b, p.cur)
	p.cur = p.cur[n:]
	return n, nil
}

func (p *partReader) Close() error { return nil }
