package relay

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/hookrelay/hookrelay/persist"
	"github.com/hookrelay/hookrelay/protocol"
)

// OpenBadgerQueue opens the embedded Badger store in opts.Dir as the relay's Queue: the
// single-machine default. It holds DefaultGroup only, for now: per-group state on Badger
// comes with consumer groups.
func OpenBadgerQueue(opts persist.Options) (Queue, error) {
	if opts.LeaseBodyMax == 0 {
		opts.LeaseBodyMax = leaseBodyMax
	}
	st, err := persist.Open(opts)
	if err != nil {
		return nil, err
	}
	return badgerQueue{st}, nil
}

// badgerQueue adapts persist.Store, the one this file wraps, to Queue. It is the only place
// in the relay that knows the store is Badger.
type badgerQueue struct{ st *persist.Store }

// checkGroup refuses a group other than DefaultGroup (and "" where any is means every group).
func checkGroup(group string, anyOK bool) error {
	if group == DefaultGroup || (anyOK && group == "") {
		return nil
	}
	return fmt.Errorf("%w: group %q not declared", persist.ErrInvalid, group)
}

func (q badgerQueue) Append(ctx context.Context, r *persist.Record) error {
	return q.st.Append(ctx, r)
}

func (q badgerQueue) AppendFrom(ctx context.Context, r *persist.Record, body io.Reader) error {
	w, err := q.st.NewBody()
	if err != nil {
		return fmt.Errorf("append: %w", err)
	}
	if _, err := io.Copy(w, body); err != nil {
		w.Abort()
		return fmt.Errorf("append: %w", err)
	}
	return q.st.AppendBody(ctx, r, w)
}

func (q badgerQueue) Lease(_ context.Context, group, endpoint string, max int, ttl time.Duration) ([]*persist.Record, error) {
	if err := checkGroup(group, false); err != nil {
		return nil, fmt.Errorf("lease: %w", err)
	}
	return q.st.Lease(endpoint, max, ttl)
}

func (q badgerQueue) LeaseHead(_ context.Context, group, endpoint string, ttl time.Duration) (*persist.Record, time.Time, error) {
	if err := checkGroup(group, false); err != nil {
		return nil, time.Time{}, fmt.Errorf("lease head: %w", err)
	}
	return q.st.LeaseHead(endpoint, ttl)
}

func (q badgerQueue) Release(_ context.Context, group string, leases map[string]uint64) error {
	if err := checkGroup(group, false); err != nil {
		return fmt.Errorf("release: %w", err)
	}
	q.st.ReleaseLease(leases)
	return nil
}

// Quarantined lists the records set aside at open (metrics report their count).
func (q badgerQueue) Quarantined() []string { return q.st.Quarantined() }

func (q badgerQueue) Extend(_ context.Context, group string, leases map[string]uint64, ttl time.Duration) ([]string, error) {
	if err := checkGroup(group, false); err != nil {
		return nil, fmt.Errorf("extend: %w", err)
	}
	return q.st.ExtendLease(leases, ttl), nil
}

func (q badgerQueue) Apply(_ context.Context, group string, changes []persist.Change) []error {
	if err := checkGroup(group, false); err != nil {
		errs := make([]error, len(changes))
		for i := range errs {
			errs[i] = fmt.Errorf("apply: %w", err)
		}
		return errs
	}
	return q.st.Apply(changes)
}

func (q badgerQueue) Ready(group, endpoint string) (<-chan struct{}, time.Time) {
	if checkGroup(group, false) != nil {
		return nil, time.Time{} // never ready: Lease says why
	}
	wake := q.st.Wait(endpoint)
	due, _ := q.st.NextDue(endpoint)
	return wake, due
}

func (q badgerQueue) Get(_ context.Context, id string) (*persist.Record, error) {
	return q.st.Get(id)
}

// leaseBodyMax is the largest body a lease carries: larger ones go out a tunnel chunk at a
// time, read from their segments as they are sent (Body), never whole in memory.
const leaseBodyMax = protocol.DefaultChunk

// Body streams the body from its segments, one at a time.
func (q badgerQueue) Body(_ context.Context, id string) (io.ReadCloser, error) {
	rc, err := q.st.Body(id)
	if err != nil {
		return nil, fmt.Errorf("body: %w", err)
	}
	return rc, nil
}

func (q badgerQueue) List(_ context.Context, f persist.Filter) ([]*persist.Record, error) {
	return q.st.List(f)
}

func (q badgerQueue) Stats(context.Context) ([]persist.QueueStats, error) {
	return q.st.Stats(), nil
}

func (q badgerQueue) Replay(_ context.Context, group, id string) error {
	if err := checkGroup(group, true); err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	return q.st.Replay(id)
}

func (q badgerQueue) ReplayDead(_ context.Context, group, endpoint string) (int, error) {
	if err := checkGroup(group, true); err != nil {
		return 0, fmt.Errorf("replay dead: %w", err)
	}
	return q.st.ReplayDead(endpoint)
}

func (q badgerQueue) Delete(_ context.Context, group, id string) error {
	if err := checkGroup(group, true); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	return q.st.Delete(id)
}

func (q badgerQueue) Expire(_ context.Context, endpoint string, maxAge time.Duration) (int, error) {
	return q.st.Expire(endpoint, maxAge)
}

func (q badgerQueue) Close() error { return q.st.Close() }
