package relay

import (
	"context"
	"fmt"
	"time"

	"github.com/hookrelay/hookrelay/persist"
)

// reoffer offers again the acked webhooks of endpoint whose holder (the agent that acked
// them) has had no session for timeout: an agent that died for good, or lost its disk, will
// never report their outcome, and the record would stay acked forever, counting against the
// endpoint's quota. An agent still reconnecting and retrying keeps its webhooks: only time
// without any session counts. After a relay restart an agent is taken as seen at the start.
// The webhook then goes to whichever agent of its group takes it, under the same id (a target
// de-duplicates by it if the first agent did deliver it after all).
func (s *Server) reoffer(ctx context.Context, endpoint string, timeout time.Duration) error {
	for _, g := range s.groupsOf(endpoint) {
		if err := s.reofferGroup(ctx, g, endpoint, timeout); err != nil {
			return err
		}
	}
	return nil
}

// reofferGroup is reoffer for the copies of one group: each has its own holder.
func (s *Server) reofferGroup(ctx context.Context, group, endpoint string, timeout time.Duration) error {
	acked, err := s.queue.List(ctx, persist.Filter{Queue: endpoint, Group: group, State: persist.StateAcked, Limit: reofferScan})
	if err != nil {
		return fmt.Errorf("list acked: %w", err)
	}
	now := time.Now()
	var changes []persist.Change
	for _, r := range acked {
		if r.State != persist.StateAcked {
			continue
		}
		if away, ok := s.hub.awayFor(r.Holder, now); ok && away >= timeout {
			changes = append(changes, persist.Change{ID: r.ID, State: persist.StateReady, Next: now})
		}
	}
	if len(changes) == 0 {
		return nil
	}
	n := 0
	for i, err := range s.queue.Apply(ctx, group, changes) {
		if err == nil {
			n++
			continue
		}
		s.log.Debug("acked webhook not offered again", "id", changes[i].ID, "err", err)
	}
	s.metrics.reoffered.WithLabelValues(endpoint, group).Add(float64(n))
	s.log.Warn("acked webhooks offered again: their agent had no session for outcome_timeout",
		"endpoint", endpoint, "group", group, "count", n, "outcome_timeout", timeout)
	s.hub.wakeAll()
	return nil
}

// reofferScan bounds the acked records one sweep looks at per endpoint; the next sweep takes
// the rest.
const reofferScan = 10000
