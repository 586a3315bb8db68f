package jsqueue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/hookrelay/hookrelay/persist"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A lease round and a batch of outcome reports change many keys of the state bucket at once.
// Written one by one, each is a request, a Raft entry and a reply of its own, and under load
// they slowed every other write of the cluster, the publishes of ingress included. So they go
// as one atomic batch (NATS 2.12 and newer: the bucket's stream allows atomic publish): every
// key still checked against its revision, and the whole batch one commit. A batch is stored
// entirely or not at all; when it is refused (a key changed meanwhile, another relay's lease
// came first), each write is made on its own, which tells the one that conflicts from the
// rest.

// maxBatch bounds the writes of one batch (the server takes up to 1,000).
const maxBatch = 256

// stateWrite is one key's new state and the revision it must still be at (0: no key yet).
type stateWrite struct {
	group, id string
	g         gstate
	rev       uint64
}

// enableBatches lets the state bucket's stream take atomic batches. A server older than 2.12
// keeps the setting off (it does not know it): the writes then go one at a time.
func (q *Queue) enableBatches(ctx context.Context) error {
	name := "KV_" + q.opts.Name + "_STATE"
	st, err := q.js.Stream(ctx, name)
	if err != nil {
		return err
	}
	q.kvStream = st // for purging delete markers (gc.go)
	cfg := st.CachedInfo().Config
	if !cfg.AllowAtomicPublish {
		cfg.AllowAtomicPublish = true
		var apiErr *jetstream.APIError
		updated, err := q.js.UpdateStream(ctx, cfg)
		if errors.As(err, &apiErr) { // refused: the writes go one at a time
			q.log.Info("jetstream queue: state writes one at a time", "err", err)
			return nil
		}
		if err != nil {
			return err
		}
		st = updated
	}
	q.batches = st.CachedInfo().Config.AllowAtomicPublish
	if !q.batches {
		q.log.Info("jetstream queue: state writes one at a time (NATS older than 2.12)")
	}
	return nil
}

// writeAll makes the writes (each of a different key) and gives each one's error: nil,
// errConflict when its key moved on meanwhile, or another error.
func (q *Queue) writeAll(ctx context.Context, ws []stateWrite) []error {
	errs := make([]error, len(ws))
	for off := 0; off < len(ws); off += maxBatch {
		chunk := ws[off:min(off+maxBatch, len(ws))]
		if len(chunk) > 1 && q.batches && q.writeBatch(ctx, chunk) == nil {
			continue
		}
		inParallel(len(chunk), func(i int) {
			w := chunk[i]
			errs[off+i] = q.write(ctx, w.group, w.id, w.g, w.rev)
		})
	}
	return errs
}

// batchAck is the answer to a batch's commit.
type batchAck struct {
	Seq   uint64 `json:"seq"`
	Count uint64 `json:"count"`
	Error *struct {
		Code        int    `json:"err_code"`
		Description string `json:"description"`
	} `json:"error"`
}

// writeBatch writes ws as one atomic batch; an error means none of them was written (or,
// after a lost answer, all were: the writes one by one then find their keys moved on, and
// the mirror learns the states from the watch).
func (q *Queue) writeBatch(ctx context.Context, ws []stateWrite) error {
	id := strconv.FormatUint(rand.Uint64(), 36)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second) // a lost answer must not hold the caller
	defer cancel()
	var reply *nats.Msg
	for i, w := range ws {
		m := &nats.Msg{Subject: q.kvSubject(stateKey(w.group, w.id)),
			Header: nats.Header{}, Data: w.g.encode()}
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(w.rev, 10))
		m.Header.Set("Nats-Batch-Id", id)
		m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i+1))
		if i < len(ws)-1 {
			if err := q.nc.PublishMsg(m); err != nil {
				return fmt.Errorf("write states: %w", err)
			}
			continue
		}
		m.Header.Set("Nats-Batch-Commit", "1")
		var err error
		if reply, err = q.nc.RequestMsgWithContext(ctx, m); err != nil {
			return fmt.Errorf("write states: %w", err)
		}
	}
	var ack batchAck
	if err := json.Unmarshal(reply.Data, &ack); err != nil {
		return fmt.Errorf("write states: answer: %w", err)
	}
	if ack.Error != nil {
		return fmt.Errorf("write states: %s (%d)", ack.Error.Description, ack.Error.Code)
	}
	if ack.Count != uint64(len(ws)) || ack.Seq < ack.Count {
		return errors.New("write states: answer counts another batch")
	}
	// A batch's messages are stored one after the other: the first at Seq-Count+1.
	first := ack.Seq - ack.Count + 1
	for i, w := range ws {
		q.m.set(w.id, w.group, slot{g: w.g, rev: first + uint64(i)})
	}
	return nil
}

// mutateAll is mutate for several webhooks (each id once) at once: f changes each one's state
// as the mirror holds it (k is the id's index), the changes are written in one batch, and
// those that met a newer state are made again one by one.
func (q *Queue) mutateAll(ctx context.Context, group string, ids []string, f func(k int, g *gstate, now time.Time) (bool, error)) []error {
	errs := make([]error, len(ids))
	now := time.Now()
	var ws []stateWrite
	var wrote []int // the index of each write's id
	for k, id := range ids {
		s, ok := q.m.get(id, group)
		if !ok || s.slot.g.Deleted {
			errs[k] = fmt.Errorf("record %s: %w", id, persist.ErrNotFound)
			continue
		}
		g := s.slot.g
		write, err := f(k, &g, now)
		if err != nil || !write {
			errs[k] = err
			continue
		}
		ws = append(ws, stateWrite{group: group, id: id, g: g, rev: s.slot.rev})
		wrote = append(wrote, k)
	}
	var again []int
	for j, err := range q.writeAll(ctx, ws) {
		if errors.Is(err, errConflict) {
			again = append(again, wrote[j])
		} else {
			errs[wrote[j]] = err
		}
	}
	inParallel(len(again), func(j int) {
		k := again[j]
		errs[k] = q.mutate(ctx, group, ids[k], func(g *gstate, now time.Time) (bool, error) { return f(k, g, now) })
	})
	return errs
}
