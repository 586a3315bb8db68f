package agent

import (
	"time"
)

// EventKind says what an Event reports.
type EventKind uint8

// Event kinds. The comment lists the Event fields each one sets besides Kind and Time.
const (
	// EventTunnelUp: the relay welcomed a session. Relay, Transport, Session, AgentID.
	EventTunnelUp EventKind = iota + 1
	// EventTunnelDown: a session ended, or a dial or handshake failed (WasUp false); the agent
	// reconnects after RetryIn. Relay, Reason, WasUp, RetryIn.
	EventTunnelDown
	// EventReceived: a whole webhook arrived from the relay. Endpoint, ID, Bytes, Replay.
	EventReceived
	// EventStored: a new webhook was stored durably; its ack is on the way. Endpoint, ID,
	// Bytes, Replay.
	EventStored
	// EventDuplicate: the agent already held this id and acked it without storing it again;
	// with Replay it is delivered again, else not. Endpoint, ID, Replay.
	EventDuplicate
	// EventNacked: the agent refused a webhook (the relay offers it again later). Endpoint,
	// ID, ErrKind (no_route, quota, disk_full, store, replay, ordered), Reason.
	EventNacked
	// EventAttempt: a delivery attempt ended, or a webhook went dead or was filtered without
	// one (ErrKind "none"). Endpoint, Route, ID, Method, Path, Query, Body, Replay, Attempt,
	// Outcome, Status or ErrKind, Err, Duration, and RetryIn (retry) or Reason (dead, filtered).
	EventAttempt
	// EventReportsSent: Count final outcomes were reported to the relay.
	EventReportsSent
)

// String names the kind: tunnel_up, tunnel_down, received, stored, duplicate, nacked, attempt,
// reports_sent.
func (k EventKind) String() string {
	switch k {
	case EventTunnelUp:
		return "tunnel_up"
	case EventTunnelDown:
		return "tunnel_down"
	case EventReceived:
		return "received"
	case EventStored:
		return "stored"
	case EventDuplicate:
		return "duplicate"
	case EventNacked:
		return "nacked"
	case EventAttempt:
		return "attempt"
	case EventReportsSent:
		return "reports_sent"
	}
	return "unknown"
}

// AttemptOutcome is what became of one delivery attempt, as events and metric labels name it.
// It is not protocol.Outcome: that is the final result (delivered or dead, never retry) that
// a Report frame carries to the relay once per webhook.
type AttemptOutcome string

// Outcomes of EventAttempt.
const (
	OutcomeDelivered AttemptOutcome = "delivered" // the target answered 2xx
	OutcomeRetry     AttemptOutcome = "retry"     // it failed and will be tried again after RetryIn
	OutcomeDead      AttemptOutcome = "dead"      // it failed for good and is a dead letter (Reason)
	OutcomeFiltered  AttemptOutcome = "filtered"  // the route's filter passed it by (Reason); no request made
)

// Error kinds of an attempt (Event.ErrKind) when the target gave no status.
const (
	ErrKindConnect = "connect" // no connection to the target (refused, reset, DNS…)
	ErrKindTimeout = "timeout" // the route's timeout passed
	ErrKindRequest = "request" // the exchange failed otherwise
	ErrKindNone    = "none"    // no request was made (too old, or refused before sending)
)

// Event is one thing the agent did, for Config.OnEvent (the agent's metrics see the same
// stream). Fields a kind does not list are zero. Ids are the relay's webhook ids.
type Event struct {
	Kind EventKind
	Time time.Time

	// tunnel
	Relay     string // the relay URL without credentials or query
	Transport string // "websocket" or "quic"
	Session   string // the relay's session id
	AgentID   string
	WasUp     bool          // TunnelDown: a session had been welcomed before it ended
	RetryIn   time.Duration // TunnelDown: wait before the next dial; Attempt: before the next try

	// webhook
	Endpoint string
	Route    string // Attempt: the route's name
	ID       string // the relay's id
	Method   string
	Path     string // the path suffix after /h/{endpoint}, as received; "" for none
	Query    string // the raw query, without "?"
	// Body is the webhook's body (Attempt only). It is shared with the agent: read it during
	// the call, never modify it.
	Body   []byte
	Bytes  int  // Received, Stored: body size
	Replay bool // the webhook is (being delivered as) a replay

	// attempt
	Attempt  int // 1, 2, …
	Outcome  AttemptOutcome
	Status   int    // the target's HTTP status; 0 when there was none
	ErrKind  string // Attempt without a status: connect, timeout, request or none; Nacked: why
	Err      string // the attempt's error text ("" on success); never holds the target URL
	Duration time.Duration
	Reason   string // Dead: why it is dead; Nacked, TunnelDown: why

	Count int // ReportsSent
}

// emit hands ev to Config.OnEvent, then to the metrics (so a metric that moved means the
// hook has seen the event).
func (a *Agent) emit(ev Event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	if f := a.cfg.OnEvent; f != nil {
		f(ev)
	}
	a.metrics.observe(ev)
}

// tunnelDown emits EventTunnelDown for a session that ended (wasUp) or a dial that failed.
func (a *Agent) tunnelDown(err error, wasUp bool, retryIn time.Duration) {
	reason := "closed"
	if err != nil {
		reason = err.Error()
	}
	a.emit(Event{Kind: EventTunnelDown, Relay: a.currentRelay(), Reason: reason, WasUp: wasUp, RetryIn: retryIn})
}
