package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/hookrelay/hookrelay/persist"
	"github.com/hookrelay/hookrelay/protocol"
)

// GroupsFunc names the consumer groups an endpoint declares (nil or empty: [default]); for
// endpoint "", every group any endpoint declares.
type GroupsFunc func(endpoint string) []string

// OpenBadgerQueue opens the embedded Badger store in opts.Dir as the relay's Queue: the
// single-machine default, holding DefaultGroup only.
func OpenBadgerQueue(opts persist.Options) (Queue, error) {
	return OpenBadgerQueueGroups(opts, nil)
}

// OpenBadgerQueueGroups is OpenBadgerQueue with the consumer groups of each endpoint, asked
// at every append (a reload may declare more) and for the calls that name a group.
//
// Each group's share of a webhook is a persist record of its own (queue_groups.go): the
// default group's under the webhook's id in the endpoint's queue, as before groups
// existed, another group's under id + "~" + group in the queue endpoint + "\x00" + group
// (no endpoint name holds a NUL), all stored in one commit by AppendCopies. Each copy holds
// its own body (the bytes are stored once per group) and counts against the endpoint's
// quota on its own: the quota bounds each group's backlog.
func OpenBadgerQueueGroups(opts persist.Options, groups GroupsFunc) (Queue, error) {
	if opts.LeaseBodyMax == 0 {
		opts.LeaseBodyMax = leaseBodyMax
	}
	if quota := opts.Quota; quota != nil {
		opts.Quota = func(queue string) int64 {
			ep, _ := splitQueue(queue)
			return quota(ep)
		}
	}
	st, err := persist.Open(opts)
	if err != nil {
		return nil, err
	}
	if groups == nil {
		groups = func(string) []string { return nil }
	}
	return badgerQueue{st: st, groups: groups}, nil
}

// badgerQueue adapts persist.Store, the one this file wraps, to Queue. It is the only place
// in the relay that knows the store is Badger.
type badgerQueue struct {
	st     *persist.Store
	groups GroupsFunc
}

// groupsOf is endpoint's declared groups.
func (q badgerQueue) groupsOf(endpoint string) []string {
	if gs := q.groups(endpoint); len(gs) > 0 {
		return gs
	}
	return []string{DefaultGroup}
}

// checkGroup refuses a group that endpoint does not declare ("" where anyOK: every group).
func (q badgerQueue) checkGroup(group, endpoint string, anyOK bool) error {
	if (anyOK && group == "") || slices.Contains(q.groupsOf(endpoint), group) {
		return nil
	}
	return fmt.Errorf("%w: group %q not declared on endpoint %q", persist.ErrInvalid, group, endpoint)
}

// checkAnyGroup refuses a group no endpoint declares (calls that name ids, not an endpoint).
func (q badgerQueue) checkAnyGroup(group string, anyOK bool) error {
	if (anyOK && group == "") || slices.Contains(q.knownGroups(nil), group) {
		return nil
	}
	return fmt.Errorf("%w: group %q not declared", persist.ErrInvalid, group)
}

func (q badgerQueue) Append(ctx context.Context, r *persist.Record) error {
	if r.Queue == "" {
		return q.st.Append(ctx, r) // persist says why
	}
	ep := r.Queue
	primary, copies := q.copies(ep)
	if !primary {
		r.Queue = ""
	}
	err := q.st.AppendCopies(ctx, r, copies)
	r.Queue = ep
	return err
}

// copies lists the copies a new webhook of endpoint gets beside its plain record, and
// whether that one is stored (the default group's: not when the endpoint lacks it).
func (q badgerQueue) copies(endpoint string) (primary bool, copies []persist.Copy) {
	for _, g := range q.groupsOf(endpoint) {
		if g == DefaultGroup {
			primary = true
			continue
		}
		copies = append(copies, persist.Copy{Queue: queueName(endpoint, g), Suffix: copySuffix(g)})
	}
	return primary, copies
}

func (q badgerQueue) AppendFrom(ctx context.Context, r *persist.Record, body io.Reader) error {
	if r.Queue == "" {
		return fmt.Errorf("append: %w: empty queue", persist.ErrInvalid)
	}
	ep := r.Queue
	primary, copies := q.copies(ep)
	w, err := q.st.NewBody()
	if err != nil {
		return fmt.Errorf("append: %w", err)
	}
	ws := []io.Writer{w}
	for i := range copies {
		cw, err := q.st.NewBody()
		if err != nil {
			w.Abort()
			for _, c := range copies[:i] {
				c.Body.Abort()
			}
			return fmt.Errorf("append: %w", err)
		}
		copies[i].Body = cw
		ws = append(ws, cw)
	}
	if _, err := io.Copy(io.MultiWriter(ws...), body); err != nil {
		w.Abort()
		for _, c := range copies {
			c.Body.Abort()
		}
		return fmt.Errorf("append: %w", err)
	}
	if !primary {
		r.Queue = ""
	}
	err = q.st.AppendBodyCopies(ctx, r, w, copies)
	r.Queue = ep
	return err
}

func (q badgerQueue) Lease(_ context.Context, group, endpoint string, max int, ttl time.Duration) ([]*persist.Record, error) {
	if err := q.checkGroup(group, endpoint, false); err != nil {
		return nil, fmt.Errorf("lease: %w", err)
	}
	recs, err := q.st.Lease(queueName(endpoint, group), max, ttl)
	for _, r := range recs {
		plain(r)
	}
	return recs, err
}

func (q badgerQueue) LeaseHead(_ context.Context, group, endpoint string, ttl time.Duration) (*persist.Record, time.Time, error) {
	if err := q.checkGroup(group, endpoint, false); err != nil {
		return nil, time.Time{}, fmt.Errorf("lease head: %w", err)
	}
	r, due, err := q.st.LeaseHead(queueName(endpoint, group), ttl)
	if r != nil {
		plain(r)
	}
	return r, due, err
}

// copyLeases maps webhook ids to group's copies.
func copyLeases(group string, leases map[string]uint64) map[string]uint64 {
	if group == DefaultGroup {
		return leases
	}
	m := make(map[string]uint64, len(leases))
	for id, tok := range leases {
		m[copyID(group, id)] = tok
	}
	return m
}

func (q badgerQueue) Release(_ context.Context, group string, leases map[string]uint64) error {
	if err := q.checkAnyGroup(group, false); err != nil {
		return fmt.Errorf("release: %w", err)
	}
	q.st.ReleaseLease(copyLeases(group, leases))
	return nil
}

// Quarantined lists the records set aside at open (metrics report their count).
func (q badgerQueue) Quarantined() []string { return q.st.Quarantined() }

func (q badgerQueue) Extend(_ context.Context, group string, leases map[string]uint64, ttl time.Duration) ([]string, error) {
	if err := q.checkAnyGroup(group, false); err != nil {
		return nil, fmt.Errorf("extend: %w", err)
	}
	lost := q.st.ExtendLease(copyLeases(group, leases), ttl)
	for i, id := range lost {
		lost[i], _ = splitID(id)
	}
	return lost, nil
}

func (q badgerQueue) Apply(_ context.Context, group string, changes []persist.Change) []error {
	if err := q.checkAnyGroup(group, false); err != nil {
		errs := make([]error, len(changes))
		for i := range errs {
			errs[i] = fmt.Errorf("apply: %w", err)
		}
		return errs
	}
	if group != DefaultGroup {
		cs := slices.Clone(changes)
		for i := range cs {
			cs[i].ID = copyID(group, cs[i].ID)
		}
		changes = cs
	}
	return q.st.Apply(changes)
}

func (q badgerQueue) Ready(group, endpoint string) (<-chan struct{}, time.Time) {
	if q.checkGroup(group, endpoint, false) != nil {
		return nil, time.Time{} // never ready: Lease says why
	}
	name := queueName(endpoint, group)
	wake := q.st.Wait(name)
	due, _ := q.st.NextDue(name)
	return wake, due
}

// leaseBodyMax is the largest body a lease carries: larger ones go out a tunnel chunk at a
// time, read from their segments as they are sent (Body), never whole in memory.
const leaseBodyMax = protocol.DefaultChunk

// Body streams the body from the segments of any copy of id (they hold the same bytes), one
// at a time.
func (q badgerQueue) Body(_ context.Context, id string) (io.ReadCloser, error) {
	var err error
	for _, cid := range q.copyIDs(id) {
		var rc io.ReadCloser
		if rc, err = q.st.Body(cid); err == nil {
			return rc, nil
		}
		if !errors.Is(err, persist.ErrNotFound) {
			break
		}
	}
	return nil, fmt.Errorf("body: %w", err)
}

func (q badgerQueue) Expire(_ context.Context, endpoint string, maxAge time.Duration) (int, error) {
	n := 0
	for _, g := range q.groupsOf(endpoint) {
		k, err := q.st.Expire(queueName(endpoint, g), maxAge)
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func (q badgerQueue) Close() error { return q.st.Close() }

// Names of copies. A group's copy of webhook id in endpoint's queue: the default group's is
// the plain record, another's is id + "~" + group in endpoint + "\x00" + group. Ids are
// ULIDs (no '~'), group names letters, digits, '-' and '_' (ValidGroup).
func queueName(endpoint, group string) string {
	if group == DefaultGroup {
		return endpoint
	}
	return endpoint + "\x00" + group
}

func copySuffix(group string) string { return "~" + group }

func copyID(group, id string) string {
	if group == DefaultGroup {
		return id
	}
	return id + copySuffix(group)
}

// splitQueue is the endpoint and group of a store queue.
func splitQueue(queue string) (endpoint, group string) {
	if ep, g, ok := strings.Cut(queue, "\x00"); ok {
		return ep, g
	}
	return queue, DefaultGroup
}

// splitID is the webhook id and group of a copy's id.
func splitID(id string) (string, string) {
	if base, g, ok := strings.Cut(id, "~"); ok {
		return base, g
	}
	return id, DefaultGroup
}

// plain makes a copy's record read as its webhook's: its id and endpoint.
func plain(r *persist.Record) {
	r.ID, _ = splitID(r.ID)
	r.Queue, _ = splitQueue(r.Queue)
}
