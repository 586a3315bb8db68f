package agent

import "github.com/hookrelay/hookrelay/protocol"

// orderedRefused is the Nack reason of a webhook of an ordered endpoint refused because an
// earlier one was.
const orderedRefused = "ordered: an earlier webhook was refused"

// orderedStore stores the webhooks of one ordered endpoint one at a time, in the order they
// arrived: with the parallel store workers a later one could commit first (and be delivered
// first), or fit where a bigger earlier one was refused. Once one is refused, every later one
// is refused too until the refused one comes again and is stored, so the relay offers them
// again in order.
type orderedStore struct {
	in      chan *protocol.Webhook // fed by the reader
	refused string                 // the id refused first; "" when none (owned by run)
}

// orderedQueue is how many webhooks of one ordered endpoint may wait for its store goroutine.
const orderedQueue = 64

// startOrdered hands w to its endpoint's ordered store, starting it on the first webhook.
// False when the session ended. Called by the reader only.
func (s *session) startOrdered(w *protocol.Webhook) bool {
	o := s.ordered[w.Endpoint]
	if o == nil {
		o = &orderedStore{in: make(chan *protocol.Webhook, orderedQueue)}
		if s.ordered == nil {
			s.ordered = map[string]*orderedStore{}
		}
		s.ordered[w.Endpoint] = o
		s.wg.Go(func() { s.runOrdered(o) })
	}
	select {
	case o.in <- w:
		return true
	case <-s.conn.Done():
	case <-s.ctx.Done():
	}
	return false
}

// runOrdered stores o's webhooks until the session ends; those still waiting then were not
// acked, so the relay offers them again.
func (s *session) runOrdered(o *orderedStore) {
	for {
		select {
		case <-s.ctx.Done():
			return
		case w := <-o.in:
			if o.refused != "" && w.ID != o.refused {
				s.appendRecord(w, nil, true) // drops a staged body
				s.nack(w, "ordered", orderedRefused)
				continue
			}
			if s.storeWebhook(w) {
				o.refused = ""
			} else if o.refused == "" {
				o.refused = w.ID
			}
		}
	}
}
