package agent

import (
	"errors"
	"fmt"
	"time"

	"github.com/hookrelay/hookrelay/persist"
	"github.com/hookrelay/hookrelay/protocol"
)

// reportRetry is how long the reporter waits after a store error before reading again;
// reportResend how long a version-2 relay has to confirm a report before it is sent again.
const (
	reportRetry  = 5 * time.Second
	reportResend = 10 * time.Second
)

// reportLoop sends the final outcome of every webhook the relay has not heard of yet: first
// those left from earlier sessions and runs, then each time a deliverer finishes a copy. A
// webhook of several routes is reported once all its copies finished (outcome below).
//
// With a relay of protocol version 2, a webhook's copies are marked reported only once the
// relay confirmed the report durably recorded (Recorded); until then the report is sent again
// every reportResend, and on every later session. With a version-1 relay, they are marked
// reported once its Report frame was written (all that relay offers).
func (s *session) reportLoop() {
	retry := time.NewTimer(0)
	<-retry.C
	defer retry.Stop()
	r := reporter{
		sent:    map[string]time.Time{},
		copies:  map[string][]string{},
		waiting: map[string]time.Time{},
	}
	for {
		n, fresh, err := s.sendReports(&r)
		switch {
		case err != nil:
			if errors.Is(err, errSessionEnded) || s.ended() {
				return
			}
			s.log.Warn("send reports", "err", err)
			retry.Reset(reportRetry)
		case n == reportBatch && fresh > 0:
			continue // more may be waiting
		case len(r.sent) > 0 || len(r.waiting) > 0:
			retry.Reset(reportResend)
		}
		select {
		case <-s.ctx.Done():
			return
		case <-s.conn.Done():
			return
		case ids := <-s.recorded:
			s.confirmed(&r, ids)
		case <-s.env.reportWake:
		case <-retry.C:
		}
	}
}

// reporter is reportLoop's state.
type reporter struct {
	sent   map[string]time.Time // v2: reports sent and not confirmed yet, by the relay's id
	copies map[string][]string  // v2: the copies each sent report stands for
	// waiting holds copies finished while another copy of their webhook was not, with when
	// that was seen: they are left out for reportResend (the last copy to finish brings the
	// report; the wait only covers a copy replayed meanwhile).
	waiting map[string]time.Time
}

// confirmed marks the copies of the webhooks the relay recorded as reported.
func (s *session) confirmed(r *reporter, ids []string) {
	for more := true; more; { // take every confirmation waiting
		select {
		case more2 := <-s.recorded:
			ids = append(ids, more2...)
		default:
			more = false
		}
	}
	var mark []string
	for _, id := range ids {
		if cs, ok := r.copies[id]; ok {
			mark = append(mark, cs...)
		} else {
			mark = append(mark, s.allCopyIDs(id)...) // answered outside the loop (answerFinished)
		}
		delete(r.sent, id)
		delete(r.copies, id)
	}
	// ErrNotFound or ErrState for an id no longer finished (replayed) or gone: nothing to mark.
	if err := s.env.store.MarkReported(mark...); err != nil && !errors.Is(err, persist.ErrNotFound) &&
		!errors.Is(err, persist.ErrState) {
		s.log.Warn("mark reported", "err", err)
	}
	s.log.Debug("reports recorded by the relay", "count", len(ids))
	s.env.emit(Event{Kind: EventReportsSent, Count: len(ids)})
}

// allCopyIDs lists every id a copy of webhook wid may have, whatever its endpoint.
func (s *session) allCopyIDs(wid string) []string {
	ids := []string{wid}
	for _, d := range s.env.routes.all {
		if !d.r.first {
			ids = append(ids, d.r.copyID(wid))
		}
	}
	return ids
}

// sendReports sends one batch of unreported outcomes: it returns how many records it read and
// how many reports it sent. Version 1 marks them reported once written; version 2 notes them
// in r.sent and leaves out those sent less than reportResend ago.
func (s *session) sendReports(r *reporter) (n, fresh int, err error) {
	now := time.Now()
	recs, err := s.env.store.UnreportedExcept(reportBatch, func(id string) bool {
		if at, ok := r.waiting[id]; ok {
			if now.Sub(at) < reportResend {
				return true
			}
			delete(r.waiting, id)
		}
		at, ok := r.sent[webhookID(id)]
		return ok && now.Sub(at) < reportResend
	})
	if err != nil {
		return 0, 0, fmt.Errorf("read unreported: %w", err)
	}
	var ids, mark []string
	var reps []*protocol.Report
	seen := map[string]bool{}
	for _, rec := range recs {
		wid := webhookID(rec.ID)
		if seen[wid] {
			continue
		}
		seen[wid] = true
		rep, copies, err := s.outcome(endpointOf(rec.Queue), wid, rec)
		if err != nil {
			return 0, 0, err
		}
		if rep == nil {
			r.waiting[rec.ID] = now
			continue
		}
		ids = append(ids, wid)
		reps = append(reps, rep)
		if s.version >= 2 {
			r.copies[wid] = copies
		} else {
			mark = append(mark, copies...)
		}
	}
	if len(reps) == 0 {
		return len(recs), 0, nil
	}
	// Frames keep their order: once the last one was written, all were.
	for i, rep := range reps {
		var err error
		if i < len(reps)-1 || s.version >= 2 {
			err = s.conn.Send(s.ctx, rep)
		} else {
			err = s.conn.SendWait(s.ctx, rep)
		}
		switch {
		case err == nil:
		case errors.Is(err, protocol.ErrClosed), s.ctx.Err() != nil:
			return 0, 0, errSessionEnded
		default:
			return 0, 0, fmt.Errorf("write report: %w", err)
		}
	}
	if s.version >= 2 {
		for _, id := range ids {
			r.sent[id] = now
		}
		s.log.Debug("reports sent", "count", len(ids))
		return len(recs), len(ids), nil
	}
	if err := s.env.store.MarkReported(mark...); err != nil && !errors.Is(err, persist.ErrState) &&
		!errors.Is(err, persist.ErrNotFound) {
		return 0, 0, fmt.Errorf("mark reported: %w", err)
	}
	s.log.Debug("reports sent", "count", len(ids))
	s.env.emit(Event{Kind: EventReportsSent, Count: len(ids)})
	return len(recs), len(ids), nil
}

// answerFinished answers a redelivered webhook the agent already finished (every copy) with
// its outcome (never a bare ack, which would leave the relay waiting for a report that was
// lost): it reports whether id was finished and the report sent.
func (s *session) answerFinished(endpoint, id string) bool {
	rep, _, err := s.outcome(endpoint, id, nil)
	if err != nil || rep == nil {
		return false
	}
	if err := s.conn.Send(s.ctx, rep); err != nil {
		return true // the session ended: the relay offers it again
	}
	s.log.Debug("redelivered webhook answered with its outcome", "id", id, "outcome", rep.Outcome)
	return true
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

// exposes reports whether the route of endpoint exposes its target's answers.
func (s *session) exposes(queue string) bool {
	d := s.env.routes.byQueue[queue]
	return d != nil && d.r.ExposeResponse
}

// reportFor builds the Report of a finished record, or nil when it is not finished; with
// expose, it carries the last response (sync.go).
func reportFor(r *persist.Record, expose bool) *protocol.Report {
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
		if expose {
			reportResponse(rep, d)
		}
		if rep.Error == "" {
			rep.Error = d.Error
		} else if d.Error != "" && d.Error != rep.Error && rep.Error != reasonReturned {
			rep.Error += ": " + d.Error
		}
	}
	return rep
}
