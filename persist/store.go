package persist

import (
	"context"
	"time"
)

// Store is the durable queue. It owns its Badger handle and a committer goroutine; Close waits
// for them. All methods are safe for concurrent use.
type Store struct{}

// Open opens (creating if needed) the store in opts.Dir, checks the store format version, and
// makes every record that was leased when the process died ready again.
func Open(opts Options) (*Store, error) { panic("not implemented") }

// Close stops the committer (finishing what is queued) and closes Badger. Idempotent.
func (s *Store) Close() error { panic("not implemented") }

// Append stores r durably (fsynced, group commit) and returns only then. It assigns r.ID when
// empty, r.ReceivedAt when zero, and sets r.State = StateReady, r.Size. Errors: ErrExists when
// r.ID is already stored, ErrQuota over the queue's quota, ErrDiskFull, ErrClosed.
func (s *Store) Append(ctx context.Context, r *Record) error { panic("not implemented") }

// Has reports whether a record with this id is stored (in any state).
func (s *Store) Has(id string) (bool, error) { panic("not implemented") }

// Get returns the record with its body, or ErrNotFound.
func (s *Store) Get(id string) (*Record, error) { panic("not implemented") }

// Lease hands out up to max Ready records of queue whose NextAttempt is due, oldest first,
// with bodies, marking them Leased until ttl passes (then they are Ready again).
func (s *Store) Lease(queue string, max int, ttl time.Duration) ([]*Record, error) {
	panic("not implemented")
}

// Wait returns a channel closed when a record of queue may have become ready (append, release,
// nack, replay). Take a new one after each wake-up.
func (s *Store) Wait(queue string) <-chan struct{} { panic("not implemented") }

// NextDue returns the earliest NextAttempt among the Ready records of queue.
func (s *Store) NextDue(queue string) (time.Time, bool) { panic("not implemented") }

// Release returns leased records to Ready, due now, without counting an attempt.
func (s *Store) Release(ids ...string) { panic("not implemented") }

// Ack marks records Acked (relay: the agent holds them).
func (s *Store) Ack(ids ...string) error { panic("not implemented") }

// Nack returns a leased record to Ready, due at next. A non-nil d counts an attempt and is
// kept in Deliveries.
func (s *Store) Nack(id string, next time.Time, d *Delivery) error { panic("not implemented") }

// Complete finishes a record as StateDelivered or StateDead (with reason), recording d if set.
func (s *Store) Complete(id string, st State, d *Delivery, reason string) error {
	panic("not implemented")
}

// Replay makes a finished or acked record Ready again, due now, with Replay set.
func (s *Store) Replay(id string) error { panic("not implemented") }

// ReplayDead replays every dead record (of queue, or all when queue is ""); returns the count.
func (s *Store) ReplayDead(queue string) (int, error) { panic("not implemented") }

// Delete removes a record and its body.
func (s *Store) Delete(id string) error { panic("not implemented") }

// MarkReported records that a finished record's outcome reached the relay (agent).
func (s *Store) MarkReported(ids ...string) error { panic("not implemented") }

// Unreported returns up to max finished records whose outcome was not reported yet, without bodies.
func (s *Store) Unreported(max int) ([]*Record, error) { panic("not implemented") }

// List returns records matching f, newest first, without bodies.
func (s *Store) List(f Filter) ([]*Record, error) { panic("not implemented") }

// Stats returns one entry per queue that has records.
func (s *Store) Stats() []QueueStats { panic("not implemented") }

// Expire moves Ready records of queue received before now-maxAge to Dead ("retention expired").
func (s *Store) Expire(queue string, maxAge time.Duration) (int, error) { panic("not implemented") }
