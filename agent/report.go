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
			if s.ctx.Err() != nil {
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
		case <-s.a.reportWake:
		case <-retry.C:
		}
	}
}

// sendReports sends one batch of unreported outcomes and marks them reported; it returns how
// many records it read.
func (s *session) sendReports() (int, error) {
	recs, err := s.a.store.Unreported(reportBatch)
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
	written := make(chan error, 1)
	for i, rep := range reps {
		o := outFrame{f: rep}
		if i == len(reps)-1 {
			o.done = written // the writer keeps order: the last written means all were
		}
		if !s.send(o) {
			return 0, errSessionEnded
		}
	}
	select {
	case err := <-written:
		if err != nil {
			return 0, fmt.Errorf("write report: %w", err)
		}
	case <-s.ctx.Done():
		return 0, errSessionEnded
	}
	if err := s.a.store.MarkReported(ids...); err != nil {
		return 0, fmt.Errorf("mark reported: %w", err)
	}
	s.log.Debug("reports sent", "count", len(ids))
	s.a.emit(Event{Kind: EventReportsSent, Count: len(ids)})
	return len(recs), nil
}

var errSessionEnded = errors.New("session ended")

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
