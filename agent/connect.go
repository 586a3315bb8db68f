package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hookrelay/hookrelay/protocol"
)

// Reconnect policy: capped exponential backoff with full jitter, reset only after a session
// stayed up for stableAfter (so a relay that welcomes and drops at once is not hammered).
const (
	reconnectMin = 500 * time.Millisecond
	reconnectMax = 30 * time.Second
	stableAfter  = 10 * time.Second
)

// Sentinel errors of the agent.
var (
	// ErrQUICNotVerifiable: a quic:// relay's certificate is not CA-valid and no
	// relay_fingerprint is set.
	ErrQUICNotVerifiable = errors.New("the relay's QUIC certificate is not CA-valid: set relay_fingerprint: sha256:… " +
		"(hookrelay fingerprint on the relay prints it)")
)

// RelayError is an Error frame the relay sent before closing the session.
type RelayError struct {
	Code   protocol.ErrorCode
	Reason string
}

func (e *RelayError) Error() string {
	return fmt.Sprintf("relay error %s: %s", codeName(e.Code), e.Reason)
}

// goAwayError ends a session the relay is closing on purpose; reconnect after `after`.
type goAwayError struct {
	reason string
	after  time.Duration
}

func (e *goAwayError) Error() string {
	return fmt.Sprintf("relay going away (%s), reconnect in %v", e.reason, e.after)
}

func codeName(c protocol.ErrorCode) string {
	switch c {
	case protocol.CodeUnauthorized:
		return "unauthorized"
	case protocol.CodeVersion:
		return "version"
	case protocol.CodeProtocol:
		return "protocol"
	case protocol.CodeReplaced:
		return "replaced"
	case protocol.CodeInternal:
		return "internal"
	case protocol.CodeLimit:
		return "limit"
	}
	return fmt.Sprintf("code %d", c)
}

// connectionLoop keeps one session to a relay up until ctx ends: connectionOnce, then a
// backoff wait (or the relay's GoAway delay), then again. With several relays (a cluster)
// it moves on to the next one in the list after a session ended or a dial failed, at once
// (with a little jitter, so the agents of a dead relay do not arrive all in one instant),
// and backs off only after the whole list failed.
func (a *Agent) connectionLoop(ctx context.Context) {
	ds := make([]*dialer, len(a.cfg.Relays))
	for i, r := range a.cfg.Relays {
		d, err := a.newDialer(r)
		if err != nil {
			a.log.Error("cannot connect: check relay in the config", "relay", displayURL(r), "err", err)
			return
		}
		ds[i] = d
	}
	attempt, i := 0, 0
	for ctx.Err() == nil {
		d := ds[i]
		a.relayNow.Store(d.shown)
		upFor, err := a.connectionOnce(ctx, d)
		if ctx.Err() != nil {
			return
		}
		if upFor >= stableAfter {
			attempt = 0
		}
		wait := backoff(time.Millisecond, reconnectMin, reconnectMax, attempt)
		stay := false // retry the same relay (it asked for an older protocol)
		var ga *goAwayError
		var re *RelayError
		switch {
		case errors.As(err, &ga):
			wait = ga.after
			a.oldRelay.Store(false) // it may come back upgraded
			a.log.Info("relay going away", "relay", d.shown, "reason", ga.reason, "retry_in", wait)
		case errors.As(err, &re) && re.Code == protocol.CodeVersion && !a.oldRelay.Load():
			// A relay of an older protocol version: say Hello in the oldest we speak, at once.
			a.oldRelay.Store(true)
			wait, stay = 0, true
			a.log.Info("relay speaks an older protocol version: using version 1", "relay", d.shown,
				"reason", re.Reason)
		case errors.As(err, &re) && re.Code == protocol.CodeUnauthorized:
			a.log.Error("relay refused this agent: check the token, the endpoints it may receive and the group",
				"relay", d.shown, "reason", re.Reason, "retry_in", wait)
		case errors.Is(err, ErrQUICNotVerifiable), errors.Is(err, protocol.ErrFingerprintMismatch):
			a.log.Error("cannot connect", "relay", d.shown, "err", err, "retry_in", wait)
		default:
			a.log.Warn("reconnecting", "relay", d.shown, "err", err, "retry_in", wait)
		}
		switch {
		case stay:
		case len(ds) == 1:
			attempt++
		default:
			i = (i + 1) % len(ds)
			if i == 0 && upFor == 0 {
				attempt++ // every relay of the list failed: back off
			} else {
				wait = backoff(time.Millisecond, reconnectMin, reconnectMin, 0)
			}
		}
		a.tunnelDown(err, upFor > 0, wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// connectionOnce dials once (d chooses the transport: see dial.go) and runs a session until
// it ends. In auto mode a WebSocket session is ended when QUIC works again, and a session runs
// on the QUIC tunnel right away. It returns how long the last session was up after the
// relay's Welcome (0 when it never was) and why it ended.
func (a *Agent) connectionOnce(ctx context.Context, d *dialer) (time.Duration, error) {
	tun, err := d.dial(ctx)
	if err != nil {
		return 0, err
	}
	for {
		sctx, upgraded := d.watchUpgrade(ctx, tun)
		s := newSession(a, tun)
		err = s.run(sctx)
		next := upgraded()
		var upFor time.Duration
		if !s.welcomedAt.IsZero() {
			upFor = time.Since(s.welcomedAt)
			reason := "shutdown"
			switch {
			case next != nil:
				reason = "switching to quic"
			case err != nil:
				reason = err.Error()
			}
			a.log.Info("tunnel down", "transport", tun.Transport(), "session", s.id, "up_for", upFor.Round(time.Millisecond), "reason", reason)
		}
		if ctx.Err() != nil {
			if next != nil {
				next.Close()
			}
			return upFor, nil
		}
		if next == nil {
			return upFor, err
		}
		tun = next
	}
}
