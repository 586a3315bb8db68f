package agent

import (
	"errors"
	"fmt"
	"time"

	"github.com/hookrelay/hookrelay/persist"
	"github.com/hookrelay/hookrelay/protocol"
)

// reportRetry is how long the reporter waits after a store error before reading again.
const reportRetry = 5 * time.Second

// reportLoop sends the final outcome of every finished record the relay has not heard of yet:
// first those left from earlier sessions and runs, then each time a deliverer finishes one.
// A record is marked reported only after its Report frame was written.
func (s *session) reportLoop() {
	retry := time.NewTimer(0)
	<-retry.C
	defer retry.Stop()
	for {
		n, err := s.sendReports()
		if err != nil {
			if errors.Is(err, errSessionEnded) || s.ended() {
				return
			}
			s.log.Warn("send reports", "err", err)
			retry.Reset(reportRetry)
		} else if n == reportBatch {
			continue // more may be waiting
		}
		select {
		case <-s.ctx.Done():
			return
		case <-s.conn.Done():
			return
		case <-s.env.reportWake:
		case <-retry.C:
		}
	}
}

// sendReports sends one batch of unreported outcomes and marks them reported; it returns how
// many records it read.
func (s *session) sendReports() (int, error) {
	recs, err := s.env.store.Unreported(reportBatch)
	if err != nil {
		return 0, fmt.Errorf("read unreported: %w", err)
	}
	var ids []string
	var reps []*protocol.Report
	for _, r := range recs {
		if rep := reportFor(r); rep != nil {
			ids = append(ids, r.ID)
			reps = append(reps, rep)
		}
	}
	if len(reps) == 0 {
		return len(recs), nil
	}
	// Frames keep their order: once the last one was written, all were.
	for i, rep := range reps {
		var err error
		if i < len(reps)-1 {
			err = s.conn.Send(s.ctx, rep)
		} else {
			err = s.conn.SendWait(s.ctx, rep)
		}
		switch {
		case err == nil:
		case errors.Is(err, protocol.ErrClosed), s.ctx.Err() != nil:
			return 0, errSessionEnded
		default:
			return 0, fmt.Errorf("write report: %w", err)
		}
	}
	if err := s.env.store.MarkReported(ids...); err != nil {
		return 0, fmt.Errorf("mark reported: %w", err)
	}
	s.log.Debug("reports sent", "count", len(ids))
	s.env.emit(Event{Kind: EventReportsSent, Count: len(ids)})
	return len(recs), nil
}

var errSessionEnded = errors.New("session ended")

// ended reports whether the session is ending.
func (s *session) ended() bool {
	select {
	case <-s.conn.Done():
		return true
	case <-s.ctx.Done():
		return true
	default:
		return false
	}
}

// reportFor builds the Report of a finished record, or nil when it is not finished.
func reportFor(r *persist.Record) *protocol.Report {
	rep := &protocol.Report{ID: r.ID, Attempts: r.Attempts, At: time.Now()}
	switch r.State {
	case persist.StateDelivered:
		rep.Outcome = protocol.OutcomeDelivered
	case persist.StateDead:
		rep.Outcome = protocol.OutcomeDead
		rep.Error = r.DeadReason
	default:
		return nil
	}
	if !r.FinishedAt.IsZero() {
		rep.At = r.FinishedAt
	}
	if n := len(r.Deliveries); n > 0 {
		d := r.Deliveries[n-1]
		rep.Status = d.Status
		if r.FinishedAt.IsZero() {
			rep.At = d.At
		}
		if rep.Error == "" {
			rep.Error = d.Error
		} else if d.Error != "" && d.Error != rep.Error {
			rep.Error += ": " + d.Error
		}
	}
	return rep
}
