package relay

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// clusterMessageIDs is the cluster-wide memory of Standard Webhooks message ids that a queue
// shared by several relays keeps (relay/jsqueue): a sender retrying at another relay of the
// cluster gets the first copy's id too. The process-local dedup still comes first, so
// concurrent copies at one relay wait for each other as before; the Badger queue has none.
type clusterMessageIDs interface {
	// MessageID is the id a relay accepted for endpoint's msgID inside its window, or "".
	MessageID(ctx context.Context, endpoint, msgID string) (string, error)
	// RememberMessageID records id as msgID's first copy for window, or returns the id
	// another relay recorded first.
	RememberMessageID(ctx context.Context, endpoint, msgID, id string, window time.Duration) (string, error)
	// ForgetMessageID drops msgID when it still names id.
	ForgetMessageID(ctx context.Context, endpoint, msgID, id string) error
}

// forgetMessageID drops msgID's entry naming id here and in the cluster: id's answer went
// back to its sender (sync.go), so a resend is stored anew.
func (s *Server) forgetMessageID(ctx context.Context, endpoint, msgID, id string) {
	s.dedup.forget(endpoint, msgID, id)
	if cm, ok := s.queue.(clusterMessageIDs); ok {
		if err := cm.ForgetMessageID(ctx, endpoint, msgID, id); err != nil {
			s.log.Warn("could not drop the message id in the cluster: a resend may be answered from the replay window",
				"endpoint", endpoint, "id", id, "err", err)
		}
	}
}

// clusterMessageID asks the cluster for msgID's first copy; when there is one, the claim
// ends with it (waiters at this relay get it too) and it is returned. Errors are logged and
// count as "none known": the webhook is then stored, as a relay without a cluster would.
func (s *Server) clusterMessageID(ctx context.Context, endpoint, msgID string, claim *dedupClaim) string {
	cm, ok := s.queue.(clusterMessageIDs)
	if !ok {
		return ""
	}
	id, err := cm.MessageID(ctx, endpoint, msgID)
	if err != nil {
		s.log.Warn("could not look the message id up in the cluster: storing the webhook", "endpoint", endpoint, "err", err)
		return ""
	}
	if id != "" {
		claim.done(id, time.Now())
	}
	return id
}

// rememberMessageID records id as the first copy of the request's message id in the
// cluster and returns the first copy's id: id itself, or another relay's when both stored
// the same message at once. Then this relay's copy is deleted, so the message is delivered
// once, and the sender is answered with the first id.
func (s *Server) rememberMessageID(ctx context.Context, ep *endpoint, r *http.Request, id string) string {
	cm, ok := s.queue.(clusterMessageIDs)
	if !ok {
		return id
	}
	msgID, _ := ep.verifier.MessageID(r)
	first, err := cm.RememberMessageID(ctx, ep.name, msgID, id, ep.verifier.ReplayWindow())
	if err != nil {
		s.log.Warn("could not record the message id in the cluster: a resend to another relay may be stored again",
			"endpoint", ep.name, "id", id, "err", err)
		return id
	}
	if first != id {
		if err := s.queue.Delete(ctx, "", id); err != nil {
			s.log.Warn("could not delete a second copy of a message", "endpoint", ep.name, "id", id, "first", first, "err", err)
		}
	}
	return first
}

// errDuplicateCopy ends a sync registration for a copy another relay stored first.
var errDuplicateCopy = errors.New("stored first by another relay")
