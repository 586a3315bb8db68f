package relay

import (
	"errors"
	"sync"
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
// so the writes share commits. Nothing here is needed for safety: a lost ack or report only
// means a redelivery that the agent acks as a duplicate. It returns once book is closed and
// drained.
func (s *session) bookLoop() {
	for {
		op, ok := <-s.book
		if !ok {
			return
		}
		ops := []bookOp{op}
		open := true
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
		s.record(ops)
		if !open {
			return
		}
	}
}

// record writes one batch: the acks first (one store call), then the reports concurrently,
// so that a report never lands before the ack of the same id.
func (s *session) record(ops []bookOp) {
	var acks []string
	for _, op := range ops {
		acks = append(acks, op.acks...)
	}
	if len(acks) > 0 {
		if err := s.store.Ack(acks...); err != nil {
			for _, id := range acks { // one bad id must not keep the others unacked
				if err := s.store.Ack(id); err != nil && !errors.Is(err, persist.ErrState) && !errors.Is(err, persist.ErrNotFound) {
					s.log.Warn("ack not recorded", "id", id, "err", err)
				}
			}
		}
	}
	var wg sync.WaitGroup
	for _, op := range ops {
		if op.report == nil {
			continue
		}
		wg.Go(func() {
			r := op.report
			err := s.store.Complete(r.ID, op.state, &persist.Delivery{At: op.at, Status: r.Status, Error: r.Error}, op.reason)
			switch {
			case errors.Is(err, persist.ErrNotFound), errors.Is(err, persist.ErrState):
				s.log.Debug("report for a finished id ignored", "id", r.ID)
			case err != nil:
				s.log.Warn("report not recorded", "id", r.ID, "err", err)
			}
		})
	}
	wg.Wait()
}
