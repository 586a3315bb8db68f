package relay

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/hookrelay/hookrelay/persist"
)

const (
	// recordQueue bounds the state changes read but not yet recorded; a full queue holds the
	// reader back.
	recordQueue = 4096
	// recordBatch bounds the changes recorded together.
	recordBatch = 1024
	// ackHold is how long an ack is held back before it is recorded; heldMax bounds the
	// acks held.
	ackHold = 50 * time.Millisecond
	heldMax = 8192
)

// recorder writes one session's state changes (acks, nacks and outcomes) to the queue, off
// the reader's goroutine and in the order the reader handed them over. Each queue write
// waits for a group commit (an fsync); writing them one by one in the reader would cap a
// session at one frame per fsync. The recorder takes everything that is waiting and records
// it with one Apply, so the changes share commits. It holds acks back for ackHold (see
// heldAcks). Nothing here is needed for safety: a lost ack or outcome only means a
// redelivery that the agent answers as a duplicate, and a lost nack a redelivery when the
// lease expires.
type recorder struct {
	// static after construction
	queue    Queue
	group    string
	holder   string         // the agent id whose acks these are (Record.Holder)
	recorded func([]string) // nil, or called with the outcome ids once durably recorded
	log      *slog.Logger

	// owned by the session's reader
	in chan recordOp // made, and run started, by the first change; closed by close
	wg sync.WaitGroup

	// set before run
	applied func() // nil, or called after each Apply
	noHold  bool   // record acks at once (ordered endpoints wait for them)
}

// recordOp is one ack (of several ids), or one nack or outcome (change).
type recordOp struct {
	acks   []string
	change persist.Change
}

// newRecorder records for the agent holder; recorded, when set, hears which outcomes are
// durable (or were already: a finished or unknown id), after each batch.
func newRecorder(q Queue, group, holder string, recorded func([]string), log *slog.Logger) *recorder {
	return &recorder{queue: q, group: group, holder: holder, recorded: recorded, log: log}
}

// ack records that the agent holds ids durably. ack, nack, outcome and close are called by
// one goroutine (the session's reader).
func (r *recorder) ack(ids []string) { r.send(recordOp{acks: ids}) }

// nack makes id ready again at next, counting no attempt.
func (r *recorder) nack(id string, next time.Time) {
	r.send(recordOp{change: persist.Change{ID: id, State: persist.StateReady, Next: next}})
}

// outcome finishes id as st (StateDelivered or StateDead, with reason) after attempt d.
func (r *recorder) outcome(id string, st persist.State, d *persist.Delivery, reason string) {
	r.send(recordOp{change: persist.Change{ID: id, State: st, Delivery: d, Reason: reason}})
}

// send hands op to run, starting it with the first change: a session that never gets one
// (an idle agent) costs neither its goroutine nor its queue.
func (r *recorder) send(op recordOp) {
	if r.in == nil {
		r.in = make(chan recordOp, recordQueue)
		r.wg.Go(r.run)
	}
	r.in <- op
}

// close tells run that no more changes come, and waits until it recorded what is left.
func (r *recorder) close() {
	if r.in != nil {
		close(r.in)
	}
	r.wg.Wait()
}

// run records changes until close, then records what is left, every held ack included.
func (r *recorder) run() {
	held := &heldAcks{at: map[string]time.Time{}}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var ops []recordOp
		open := true
		select {
		case op, ok := <-r.in:
			if !ok {
				open = false
				break
			}
			ops = append(ops, op)
		drain:
			for len(ops) < recordBatch {
				select {
				case op, ok := <-r.in:
					if !ok {
						open = false
						break drain
					}
					ops = append(ops, op)
				default:
					break drain
				}
			}
		case <-timer.C:
		}
		r.record(ops, held, time.Now(), !open) // closed: every held ack is due
		if !open {
			return
		}
		timer.Reset(held.nextDue(time.Now()))
	}
}

// record writes one batch as one Apply (one group commit): the acks that are due (all held
// ones with all), then the nacks and outcomes in order. An ack followed by another change of
// its id is dropped: that change supersedes it.
func (r *recorder) record(ops []recordOp, held *heldAcks, now time.Time, all bool) {
	var rest []persist.Change
	all = all || r.noHold
	for _, op := range ops {
		for _, id := range op.acks {
			held.add(id, now)
		}
		if op.change.ID != "" {
			held.drop(op.change.ID)
			rest = append(rest, op.change)
		}
	}
	var changes []persist.Change
	for _, id := range held.due(now, all) {
		changes = append(changes, persist.Change{ID: id, State: persist.StateAcked, Holder: r.holder})
	}
	acks := len(changes)
	changes = append(changes, rest...)
	if len(changes) == 0 {
		return
	}
	var durable []string // outcomes the agent may stop resending
	for i, err := range r.queue.Apply(context.Background(), r.group, changes) {
		gone := errors.Is(err, persist.ErrState) || errors.Is(err, persist.ErrNotFound)
		if outcome := changes[i].State == persist.StateDelivered || changes[i].State == persist.StateDead; outcome && (err == nil || gone) {
			durable = append(durable, changes[i].ID)
		}
		if err == nil {
			continue
		}
		id := changes[i].ID
		switch {
		case i < acks && gone:
		case i < acks:
			r.log.Warn("ack not recorded", "id", id, "err", err)
		case changes[i].State == persist.StateReady:
			r.log.Warn("nack not recorded", "id", id, "err", err)
		case gone:
			r.log.Debug("report for a finished id ignored", "id", id)
		default:
			r.log.Warn("report not recorded", "id", id, "err", err)
		}
	}
	if r.recorded != nil && len(durable) > 0 {
		r.recorded(durable)
	}
	if r.applied != nil {
		r.applied()
	}
}

// heldAcks are acks read but not recorded yet, oldest first. The agent's report of a webhook
// usually follows its ack within milliseconds and finishes the record anyway, so an ack held
// for ackHold mostly need not be written at all: that saves a third of the relay's writes per
// webhook. Holding it is safe: until it is recorded, the record stays leased (the lease outlasts
// ackHold by far), and after a crash it is Ready and sent again, which the agent acks as a
// duplicate.
type heldAcks struct {
	order []string             // arrival order; ids no longer in at are skipped
	at    map[string]time.Time // held id → when its ack was read
}

func (h *heldAcks) add(id string, now time.Time) {
	if _, ok := h.at[id]; !ok {
		h.at[id] = now
		h.order = append(h.order, id)
	}
}

// drop forgets the ack of id (another change of it came); it reports whether one was held.
func (h *heldAcks) drop(id string) bool {
	_, ok := h.at[id]
	delete(h.at, id)
	return ok
}

// due takes the acks held for ackHold by now (all of them with all), and the oldest beyond
// heldMax.
func (h *heldAcks) due(now time.Time, all bool) []string {
	var ids []string
	i := 0
	for ; i < len(h.order); i++ {
		id := h.order[i]
		at, ok := h.at[id]
		if !ok {
			continue
		}
		if !all && now.Sub(at) < ackHold && len(h.at) <= heldMax {
			break
		}
		delete(h.at, id)
		ids = append(ids, id)
	}
	h.order = h.order[i:]
	if len(h.order) == 0 {
		h.order = nil // let the backing array go
	}
	return ids
}

// nextDue is how long until the oldest held ack is due (an hour when none is held).
func (h *heldAcks) nextDue(now time.Time) time.Duration {
	for len(h.order) > 0 {
		if at, ok := h.at[h.order[0]]; ok {
			return max(at.Add(ackHold).Sub(now), time.Millisecond)
		}
		h.order = h.order[1:]
	}
	return time.Hour
}
