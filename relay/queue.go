package relay

import (
	"context"
	"io"
	"time"

	"github.com/hookrelay/hookrelay/persist"
)

// DefaultGroup is the consumer group of an endpoint that declares none, and of an agent that
// names none.
const DefaultGroup = "default"

// Queue is the relay's store of webhooks, the only way the relay reaches it: the embedded
// Badger store (OpenBadgerQueue) on one machine, a JetStream stream in a cluster. It holds
// one queue per endpoint; every webhook of an endpoint is delivered once to each of the
// endpoint's consumer groups, whose state (leased, acked, delivered, dead) is kept per group.
// Methods that change delivery state name the group; a group the queue does not hold is
// refused with persist.ErrInvalid ("group X not declared").
//
// Errors wrap persist's sentinels (ErrNotFound, ErrState, ErrQuota, ErrDiskFull, ErrClosed,
// ErrInvalid): match them with errors.Is. Every method is safe for concurrent use.
//
// Bodies may be stored in parts: Lease and Get may leave Record.Body nil when it is large
// (Record.BodyLen is its size then); Body streams it either way.
type Queue interface {
	// Append stores r durably (fsynced, or replicated) and returns only then. It assigns
	// r.ID, sortable and in commit order (id order is the order in which Appends returned),
	// r.ReceivedAt when zero, r.State (Ready), r.Size and r.BodyLen. Errors: ErrQuota over
	// the endpoint's quota (finished records do not count), ErrDiskFull, ErrClosed, ErrInvalid
	// (no endpoint in r.Queue). A ctx that ends before it is stored may abandon it.
	Append(ctx context.Context, r *persist.Record) error
	// AppendFrom is Append with the body read from body (r.Body is ignored) and stored as it
	// is read, in parts, never whole in memory. A failed read of body fails it, and nothing
	// is stored.
	AppendFrom(ctx context.Context, r *persist.Record, body io.Reader) error

	// Lease hands out up to max records of endpoint that are ready and due for group, oldest
	// id first, in state Leased: no other Lease gets them until ttl passes, Release or Apply.
	Lease(ctx context.Context, group, endpoint string, max int, ttl time.Duration) ([]*persist.Record, error)
	// LeaseHead is the lease of ordered endpoints: it leases the head of endpoint for group
	// (its ready record with the lowest id, the oldest not yet acked or finished) if it is
	// due, and never hands out a record behind one that waits or is leased. Without a
	// record it returns when to look again: the head's retry time when it waits out a nack
	// or backoff, zero when there is no head or it is leased (Ready's channel says when then).
	LeaseHead(ctx context.Context, group, endpoint string, ttl time.Duration) (*persist.Record, time.Time, error)
	// Release makes the given leases (id → the Record.Lease that Lease or LeaseHead handed
	// out) ready at once, counting no attempt. A lease that is no longer current — it ran out
	// and the record went to another holder, or was released — is left alone, as are ids that
	// are not leased.
	Release(ctx context.Context, group string, leases map[string]uint64) error
	// Extend keeps the given leases ttl longer from now (a holder whose webhooks wait longer
	// than their ttl, queued behind a slow writer) and returns the ids whose lease is no
	// longer current: another holder may have them now.
	Extend(ctx context.Context, group string, leases map[string]uint64, ttl time.Duration) ([]string, error)
	// Apply records state changes of group's copies as one durable write, in order, and
	// returns one error per change (nil when applied or already so): an ack (State
	// StateAcked: the agent holds it), a nack (State StateReady, due again at Next; a
	// Delivery counts an attempt), an outcome (StateDelivered or StateDead, with Delivery and
	// Reason). ErrState when the record is not in a state for it, ErrNotFound when it is gone.
	Apply(ctx context.Context, group string, changes []persist.Change) []error
	// Ready returns a channel that is closed when a record of endpoint may have become ready
	// for group (append, release, nack, replay, lease expiry) or the queue closed, and when
	// the earliest record waiting for a retry is due: not after now when one is due already,
	// zero when none waits. Take it before leasing, and a new one after each wake-up.
	Ready(group, endpoint string) (wake <-chan struct{}, due time.Time)

	// Get returns a record, or ErrNotFound. Body may be nil (see Queue).
	Get(ctx context.Context, id string) (*persist.Record, error)
	// Body reads a record's body, byte-exact, without holding it whole. The caller closes it.
	Body(ctx context.Context, id string) (io.ReadCloser, error)
	// List returns records matching f, newest first, without bodies.
	List(ctx context.Context, f persist.Filter) ([]*persist.Record, error)
	// Stats describes each endpoint that has records, by name.
	Stats(ctx context.Context) ([]persist.QueueStats, error)

	// Replay makes a record ready again for group ("": every group where it is acked or
	// finished), due now and marked as a replay. ErrState when it is still ready or leased.
	Replay(ctx context.Context, group, id string) error
	// ReplayDead replays the dead records of endpoint ("": all) for group ("": every group
	// where they are dead), and returns how many.
	ReplayDead(ctx context.Context, group, endpoint string) (int, error)
	// Delete removes a record from group ("": the record itself, for every group).
	Delete(ctx context.Context, group, id string) error
	// Expire makes records of endpoint that waited longer than maxAge for an agent dead
	// ("retention expired"), and returns how many. Leased ones are left to their holder.
	Expire(ctx context.Context, endpoint string, maxAge time.Duration) (int, error)

	// Close closes the queue; calls then give ErrClosed. Idempotent.
	Close() error
}

// LeaseBatcher is a Queue whose lease is a round trip to other machines (the JetStream
// queue). A session leases up to LeaseBatch webhooks at once from it instead of leaseBatch:
// its leases are taken one round after the other, and with a replicated commit per round the
// rounds, not the window, would bound its rate.
type LeaseBatcher interface{ LeaseBatch() int }

// MetaReader is a Queue that reads a record without its body more cheaply than Get: a
// session checks the endpoint and state of each outcome an agent reports for a webhook it no
// longer remembers acking (after a long backlog, most of them), and Get would read every
// body too (a round trip to NATS in a cluster).
type MetaReader interface {
	// Meta is Get without the body (Record.Body nil).
	Meta(ctx context.Context, id string) (*persist.Record, error)
}

// metaOf is q's Meta when it has one, else its Get.
func metaOf(ctx context.Context, q Queue, id string) (*persist.Record, error) {
	if m, ok := q.(MetaReader); ok {
		return m.Meta(ctx, id)
	}
	return q.Get(ctx, id)
}
