package agent

import (
	"errors"
	"io"

	"github.com/hookrelay/hookrelay/persist"
)

// passes evaluates the route's filter over rec before an attempt. When it is false or fails,
// rec is finished as filtered (persist.CompleteFiltered: delivered without a request, with
// the reason), ev is emitted with OutcomeFiltered, and passes returns false. A replay is
// filtered again: the filter is what the route takes, whoever asks.
func (d *deliverer) passes(log attemptLog, rec *persist.Record, ev Event) bool {
	in := rec
	if rec.Body == nil && rec.BodyLen > 0 && rec.BodyLen <= maxFilterBody {
		// Left out of the lease (over LeaseBodyMax) but small enough to be parsed.
		body, err := d.readBody(rec.ID)
		if err != nil {
			log.Warn("read body for the filter", "err", err)
		}
		cp := *rec
		cp.Body = body
		in = &cp
	}
	ok, reason := d.r.filter.match(in)
	if ok {
		return true
	}
	if rec.Replay {
		d.mu.Lock()
		delete(d.replayBase, rec.ID)
		d.mu.Unlock()
	}
	if err := d.a.store.CompleteFiltered(rec.ID, reason); err != nil {
		if !errors.Is(err, persist.ErrClosed) {
			log.Error("record filtered", "err", err)
		}
		return false
	}
	log.Debug("filtered", "reason", reason)
	ev.Outcome, ev.Reason = OutcomeFiltered, reason
	d.a.emit(ev)
	d.a.wakeReports()
	return false
}

// readBody reads a stored body whole (the filter's, at most maxFilterBody).
func (d *deliverer) readBody(id string) ([]byte, error) {
	rc, err := d.a.store.Body(id)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(io.LimitReader(rc, maxFilterBody+1))
}
