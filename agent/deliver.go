package agent

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/hookrelay/hookrelay/persist"
	"github.com/hookrelay/hookrelay/protocol"
)

// leaseSlack is added to a route's timeout to make the lease of one attempt: a lease must
// outlast the attempt, or another worker could take the record while it is being delivered.
const leaseSlack = time.Minute

// holdPerSlot bounds the records a deliverer holds (leased, being delivered or having their
// outcome recorded) to this many per attempt slot. Only records with bodies up to
// earlyFreeMax give their slot back before their outcome is recorded, so bigger bodies stay
// bounded by the slots alone, as they were.
const (
	holdPerSlot  = 4
	earlyFreeMax = 64 << 10
)

// storeErrorWait is how long a deliverer waits after a store error before leasing again.
const storeErrorWait = time.Second

// deliverer delivers one route's queue (routes.go) to its target: up to
// Concurrency attempts at once, or one at a time in order when Ordered.
type deliverer struct {
	// static after newDeliverer
	a       *Agent
	r       *Route
	log     *slog.Logger
	client  *http.Client
	limiter *rate.Limiter    // nil = unlimited
	slots   int              // attempts in flight at most
	headers []persist.Header // the route's headers, as targetHeaders adds them

	// replayBase maps a replayed record's id to its Attempts when this process first leased it
	// after the replay, so a replay gets a fresh max_attempts budget (persist keeps counting
	// Attempts across a replay). After a restart the budget starts again: more tries, never
	// fewer.
	mu         sync.Mutex
	replayBase map[string]int

	// wake (buffered 1) makes an idle deliverer look at its queue again (a local replay).
	wake chan struct{}
}

func newDeliverer(a *Agent, r *Route) (*deliverer, error) {
	client, err := newTargetClient(r)
	if err != nil {
		return nil, err
	}
	d := &deliverer{
		a:       a,
		r:       r,
		log:     a.log.With("endpoint", r.Endpoint, "route", r.Name),
		client:  client,
		slots:   r.Concurrency,
		headers: routeHeaderList(r),

		replayBase: map[string]int{},
		wake:       make(chan struct{}, 1),
	}
	if r.Ordered {
		d.slots = 1
	}
	if r.Rate > 0 {
		d.limiter = rate.NewLimiter(rate.Limit(r.Rate), 1)
	}
	return d, nil
}

// run leases and delivers until ctx ends, then lets in-flight attempts finish for up to
// ShutdownGrace and cancels the rest, handing their records back to the queue.
func (d *deliverer) run(ctx context.Context) {
	reqCtx, cancelReqs := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelReqs()
	var inflight sync.WaitGroup
	d.feed(ctx, reqCtx, &inflight)

	done := make(chan struct{})
	go func() { inflight.Wait(); close(done) }() // joined below
	grace := time.NewTimer(d.a.cfg.ShutdownGrace)
	defer grace.Stop()
	select {
	case <-done:
	case <-grace.C:
		cancelReqs()
		<-done
	}
	d.client.CloseIdleConnections()
}

// feed leases records when attempt slots are free and starts an attempt for each.
//
// A slot is an attempt talking to the target (the route's concurrency); it is given back as
// soon as the target has answered, so the next webhook goes out while the outcome is being
// recorded (a group commit, an fsync): waiting for that with the slot held capped a route of
// 16 slots at 16 deliveries per commit time, and the queue grew (p50 latency 900 ms in the
// e2e benchmark). Records leased and not yet recorded are bounded by held (holdPerSlot per
// slot), so a slow disk holds the deliverer back instead of piling up bodies. An ordered route
// keeps its one slot until the outcome is recorded (the next record may go only after that),
// and so does a record with a body over earlyFreeMax.
func (d *deliverer) feed(ctx, reqCtx context.Context, inflight *sync.WaitGroup) {
	st := d.a.store
	q := d.r.queue
	slots := make(chan struct{}, d.slots)
	held := make(chan struct{}, d.slots*holdPerSlot)
	// Attempts run on workers, one per held token at most, kept until feed returns: a goroutine
	// per attempt grew a fresh stack through the HTTP client each time. A worker finishes its
	// attempt after that, and inflight joins it.
	work := make(chan func())
	defer close(work)
	workers := 0
	dispatch := func(attempt func()) { // with a held token: fewer attempts than workers run
		select {
		case work <- attempt:
			return
		default:
		}
		if workers < cap(held) {
			workers++
			inflight.Go(func() {
				attempt()
				for attempt := range work {
					attempt()
				}
			})
			return
		}
		work <- attempt // a worker is between attempts
	}
	take := func(block bool) bool { // one held token, then one slot
		if block {
			select {
			case held <- struct{}{}:
			case <-ctx.Done():
				return false
			}
			select {
			case slots <- struct{}{}:
				return true
			case <-ctx.Done():
				<-held
				return false
			}
		}
		select {
		case held <- struct{}{}:
		default:
			return false
		}
		select {
		case slots <- struct{}{}:
			return true
		default:
			<-held
			return false
		}
	}
	for {
		if !take(true) {
			return
		}
		n := 1
		if d.limiter == nil {
			for n < d.slots && take(false) {
				n++
			}
		} else if d.limiter.Wait(ctx) != nil {
			return
		}
		wake := st.Wait(q) // before Lease, so an append in between is not missed
		var recs []*persist.Record
		var headDue time.Time // ordered: when the head waiting out its backoff is due
		var err error
		if d.r.Ordered {
			// Only the head, and only once due: its hold is its stored next attempt, so it
			// outlives a restart, and nothing behind it overtakes it.
			var rec *persist.Record
			rec, headDue, err = st.LeaseHead(q, d.r.Timeout+leaseSlack)
			if rec != nil {
				recs = []*persist.Record{rec}
			}
		} else {
			recs, err = st.Lease(q, n, d.r.Timeout+leaseSlack)
		}
		if err != nil {
			d.log.Error("lease", "err", err)
			recs = nil
		}
		for range n - len(recs) {
			<-slots
			<-held
		}
		for _, rec := range recs {
			dispatch(func() {
				var once sync.Once
				free := func() { once.Do(func() { <-slots }) }
				defer func() { free(); <-held }()
				answered := free
				if d.r.Ordered || rec.BodyLen > earlyFreeMax {
					answered = func() {} // the slot comes back only after recording
				}
				d.attempt(reqCtx, rec, answered)
			})
		}
		switch {
		case err != nil:
			if !sleepCtx(ctx, storeErrorWait) {
				return
			}
		case len(recs) == 0:
			if !d.idle(ctx, wake, headDue) {
				return
			}
		}
	}
}

// idle waits until the queue may have a due record: a store wake-up or the next due time
// (of an ordered route, headDue: when its head is due; zero when it waits for a wake-up).
func (d *deliverer) idle(ctx context.Context, wake <-chan struct{}, headDue time.Time) bool {
	var due <-chan time.Time
	next, ok := headDue, !headDue.IsZero()
	if !d.r.Ordered {
		next, ok = d.a.store.NextDue(d.r.queue)
	}
	if ok {
		// A due time not after now means one became due since the Lease: look again soon
		// (the floor keeps a disagreement between the two from spinning).
		wait := max(time.Until(next), 0) + 5*time.Millisecond
		t := time.NewTimer(wait)
		defer t.Stop()
		due = t.C
	}
	select {
	case <-ctx.Done():
		return false
	case <-wake:
	case <-d.wake:
	case <-due:
	}
	return true
}

// wakeUp makes the deliverer lease again now if it is idle.
func (d *deliverer) wakeUp() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// attempt makes one delivery attempt of rec and records its outcome. It calls answered once
// the target has answered (or no request is made), before recording the outcome.
func (d *deliverer) attempt(ctx context.Context, rec *persist.Record, answered func()) {
	st := d.a.store
	start := time.Now()
	n := rec.Attempts + 1
	log := attemptLog{l: d.log, id: rec.ID, n: n}
	ev := d.attemptEvent(rec, n)
	hold := d.a.holds.take(rec.ID) // only the first attempt answers a sync webhook
	if n > 1 || rec.Replay {
		hold = nil
	}
	if d.r.filter != nil && !d.passes(log, rec, ev) {
		return // filtered (or the outcome could not be recorded: the lease lapses); a sync sender gets the fallback
	}
	// A replay is delivered however old the webhook is.
	if !rec.Replay && start.Sub(rec.ReceivedAt) > d.r.MaxAge {
		d.finishDead(log, rec, nil, "max age", ev)
		return
	}
	req, err := d.buildRequest(ctx, rec, n)
	if err != nil {
		d.finishDead(log, rec, nil, err.Error(), ev) // refused before any request
		return
	}
	span := d.startSpan(rec, n, req)
	resp, err := d.client.Do(req)
	res := classify(resp, err, start)
	span.End(res.status, errText(res.err))
	var body []byte
	var header http.Header
	complete := false
	if resp != nil {
		limit := recordedBody
		if hold != nil {
			limit = protocol.MaxResponseBody
		}
		body, complete = readResponse(resp, limit)
		header = resp.Header
		resp.Body.Close()
	}
	answered()
	if ctx.Err() != nil && !res.ok() {
		// Shutting down: hand the record back, this attempt does not count.
		st.Release(rec.ID)
		log.Info("delivery handed back on shutdown")
		return
	}
	took := time.Since(start)
	del := &persist.Delivery{At: start, Status: res.status, Millis: took.Milliseconds()}
	if res.err != nil {
		del.Error = res.err.Error()
	}
	recordResponse(del, header, body)
	returned := hold != nil && d.answer(ctx, hold, rec.ID, res.status, header, body, complete)
	ev.Status, ev.Err, ev.Duration, ev.ErrKind = res.status, del.Error, took, ""
	if res.status == 0 {
		ev.ErrKind = res.kind
	}
	switch {
	case returned && !res.ok(): // the sender has the answer, and owns the retries
		d.finishDead(log, rec, del, reasonReturned, ev)
	case res.ok():
		if d.finish(log, rec, persist.StateDelivered, del, "") {
			ev.Outcome = OutcomeDelivered
			d.a.emit(ev)
		}
	case !res.retryable:
		d.finishDead(log, rec, del, res.reason(), ev)
	case n-d.attemptBase(rec) >= d.r.MaxAttempts:
		d.finishDead(log, rec, del, "max attempts", ev)
	default:
		next := start.Add(max(backoff(d.r.BackoffMin, d.r.BackoffMin, d.r.BackoffMax, n-1), res.retryAfter))
		if !rec.Replay && next.Sub(rec.ReceivedAt) > d.r.MaxAge {
			d.finishDead(log, rec, del, "max age", ev)
			return
		}
		// An ordered route's head stays its head while it waits: LeaseHead hands out
		// nothing behind it, across restarts too.
		if err := st.Nack(rec.ID, next, del); err != nil {
			if !errors.Is(err, persist.ErrClosed) {
				log.Error("record retry", "err", err)
			}
			return
		}
		// The wait chosen, from the attempt's start: time.Until(next) would be 0 whenever the
		// attempt and its recording took longer than a short backoff.
		ev.Outcome, ev.RetryIn = OutcomeRetry, next.Sub(start)
		d.a.emit(ev)
		log.Debug("delivery failed, will retry", "kind", res.kind, "status", res.status, "err", res.err, "retry_in", time.Until(next).Round(time.Millisecond))
	}
}

// attemptBase is the number of attempts not counted against max_attempts: those made before
// the record was replayed.
func (d *deliverer) attemptBase(rec *persist.Record) int {
	if !rec.Replay {
		return 0
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	base, ok := d.replayBase[rec.ID]
	if !ok {
		base = rec.Attempts
		d.replayBase[rec.ID] = base
	}
	return base
}

// attemptEvent is the EventAttempt of attempt n of rec, before its outcome is known; ErrKind
// starts as "none" (no request made).
func (d *deliverer) attemptEvent(rec *persist.Record, n int) Event {
	return Event{
		Kind: EventAttempt, Endpoint: d.r.Endpoint, Route: d.r.Name, ID: webhookID(rec.ID), Method: rec.Method, Path: rec.Path,
		Query: rec.Query, Body: rec.Body, Replay: rec.Replay, Attempt: n, ErrKind: ErrKindNone,
	}
}

// finishDead makes rec a dead letter and emits ev as its dead outcome.
func (d *deliverer) finishDead(log attemptLog, rec *persist.Record, del *persist.Delivery, reason string, ev Event) {
	if d.finish(log, rec, persist.StateDead, del, reason) {
		ev.Outcome, ev.Reason = OutcomeDead, reason
		d.a.emit(ev)
	}
}

// finish records a final outcome and wakes the reporter; false when it could not be recorded.
func (d *deliverer) finish(log attemptLog, rec *persist.Record, st persist.State, del *persist.Delivery, reason string) bool {
	if rec.Replay {
		d.mu.Lock()
		delete(d.replayBase, rec.ID)
		d.mu.Unlock()
	}
	if err := d.a.store.Complete(rec.ID, st, del, reason); err != nil {
		if errors.Is(err, persist.ErrClosed) {
			return false // shutting down: the lease lapses and the record is delivered next start
		}
		log.Error("record outcome", "err", err)
		return false
	}
	if st == persist.StateDelivered {
		log.Debug("delivered", "status", del.Status, "ms", del.Millis)
	} else {
		log.Warn("dead letter", "reason", reason)
	}
	d.a.wakeReports()
	return true
}

// sleepCtx waits d; false when ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// attemptLog logs for one attempt, with its id and number. It adds them only to a line that
// is logged: Logger.With formats its attributes at once, which was 3% of the agent's CPU for
// lines that, at the default level, are never written.
type attemptLog struct {
	l  *slog.Logger
	id string
	n  int
}

func (a attemptLog) log(level slog.Level, msg string, args []any) {
	ctx := context.Background()
	if a.l.Enabled(ctx, level) {
		a.l.Log(ctx, level, msg, append([]any{"id", a.id, "attempt", a.n}, args...)...)
	}
}

func (a attemptLog) Debug(msg string, args ...any) { a.log(slog.LevelDebug, msg, args) }
func (a attemptLog) Info(msg string, args ...any)  { a.log(slog.LevelInfo, msg, args) }
func (a attemptLog) Warn(msg string, args ...any)  { a.log(slog.LevelWarn, msg, args) }
func (a attemptLog) Error(msg string, args ...any) { a.log(slog.LevelError, msg, args) }
