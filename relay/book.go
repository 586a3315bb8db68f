package relay

import (
	"errors"
	"time"

	"github.com/hookrelay/hookrelay/persist"
	"github.com/hookrelay/hookrelay/protocol"
)

const (
	// bookQueue bounds the acks and reports read but not yet recorded; a full queue holds
	// the reader back.
	bookQueue = 4096
	// bookBatch bounds the operations recorded together.
	bookBatch = 1024
)

// bookOp is one ack (of several ids) or one report, to be recorded in the store.
type bookOp struct {
	acks   []string
	report *protocol.Report
	state  persist.State
	reason string
	at     time.Time
}

// bookLoop records acks and reports off the reader's goroutine. Each store write waits for a
// group commit (an fsync); recording them one by one in the reader would cap a session at
// one frame per fsync. The bookkeeper takes everything that is waiting and records it at once,
// so the writes share commits. It holds acks back for ackHold (see held). Nothing here is
// needed for safety: a lost ack or report only means a redelivery that the agent acks as a
// duplicate. It returns once book is closed and drained, after recording every ack it held.
func (s *session) bookLoop() {
	held := &heldAcks{at: map[string]time.Time{}}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var ops []bookOp
		open := true
		select {
		case op, ok := <-s.book:
			if !ok {
				open = false
				break
			}
			ops = append(ops, op)
		drain:
			for len(ops) < bookBatch {
				select {
				case op, ok := <-s.book:
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
		s.record(ops, held, time.Now(), !open) // closed: every held ack is due
		if !open {
			return
		}
		timer.Reset(held.nextDue(time.Now()))
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

// ackHold is how long an ack is held back before it is recorded; heldMax bounds the acks held.
const (
	ackHold = 50 * time.Millisecond
	heldMax = 8192
)

func (h *heldAcks) add(id string, now time.Time) {
	if _, ok := h.at[id]; !ok {
		h.at[id] = now
		h.order = append(h.order, id)
	}
}

// drop forgets the ack of id (its report came); it reports whether one was held.
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

// record writes one batch as one store request (one group commit): the acks that are due
// (all held ones with all), then the reports. An ack whose report came too is dropped: the
// report finishes the record.
func (s *session) record(ops []bookOp, held *heldAcks, now time.Time, all bool) {
	var reports []bookOp
	for _, op := range ops {
		for _, id := range op.acks {
			held.add(id, now)
		}
		if op.report != nil {
			reports = append(reports, op)
		}
	}
	for _, op := range reports {
		held.drop(op.report.ID)
	}
	var changes []persist.Change
	for _, id := range held.due(now, all) {
		changes = append(changes, persist.Change{ID: id, State: persist.StateAcked})
	}
	acks := len(changes)
	for _, op := range reports {
		r := op.report
		changes = append(changes, persist.Change{ID: r.ID, State: op.state, Reason: op.reason,
			Delivery: &persist.Delivery{At: op.at, Status: r.Status, Error: r.Error}})
	}
	if len(changes) == 0 {
		return
	}
	for i, err := range s.store.Apply(changes) {
		switch {
		case err == nil:
		case i < acks && (errors.Is(err, persist.ErrState) || errors.Is(err, persist.ErrNotFound)):
		case i < acks:
			s.log.Warn("ack not recorded", "id", changes[i].ID, "err", err)
		case errors.Is(err, persist.ErrNotFound), errors.Is(err, persist.ErrState):
			s.log.Debug("report for a finished id ignored", "id", changes[i].ID)
		default:
			s.log.Warn("report not recorded", "id", changes[i].ID, "err", err)
		}
	}
}
