package agent

import (
	"fmt"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/testutil"
	"github.com/hookrelay/hookrelay/persist"
	"github.com/hookrelay/hookrelay/protocol"
)

// welcomeV2 accepts a tunnel and welcomes it as a relay of protocol version 2.
func welcomeV2(t *testing.T, fr *fakeRelay, session string) *relayConn {
	t.Helper()
	c, h := fr.accept(t)
	if h.Version != protocol.Version {
		t.Fatalf("hello says version %d, want %d", h.Version, protocol.Version)
	}
	c.write(t, &protocol.Welcome{SessionID: session, Endpoints: h.Endpoints, Window: 100,
		MaxFrame: protocol.DefaultMaxFrame, ServerTime: time.Now(), Version: protocol.Version})
	return c
}

func reported(t *testing.T, a *Agent, id string) bool {
	t.Helper()
	r, err := a.store.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	return r.Reported
}

// With a version-2 relay, an outcome is marked reported only once the relay confirmed it
// (Recorded); a report the relay never confirmed is sent again on the next session.
func TestReportMarkedOnlyWhenRecorded(t *testing.T) {
	tg := newTarget(t, nil)
	a, fr := runOnFakeRelay(t, tg)

	c := welcomeV2(t, fr, "s1")
	v := newView()
	c.send(t, webhook("r1", []byte("x")))
	c.until(t, v, func() bool { return len(v.reports["r1"]) == 1 })
	if reported(t, a, "r1") {
		t.Fatal("marked reported before the relay confirmed it")
	}
	// The tunnel drops before the relay confirms: the next session sends it again.
	c.tun.Close()
	c2 := welcomeV2(t, fr, "s2")
	v2 := newView()
	c2.until(t, v2, func() bool { return len(v2.reports["r1"]) == 1 })
	c2.write(t, &protocol.Recorded{IDs: []string{"r1"}})
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if !reported(t, a, "r1") {
			return fmt.Errorf("not marked reported after Recorded")
		}
		return nil
	})
}

// A webhook the agent already finished, sent again (the relay lost the report, or its ack),
// is answered with its outcome, not with a bare Ack that would leave the relay waiting.
func TestRedeliveredFinishedAnsweredWithOutcome(t *testing.T) {
	tg := newTarget(t, nil)
	a, fr := runOnFakeRelay(t, tg)
	c := fr.welcome(t) // version 1: the answer does not depend on the version
	v := newView()
	c.send(t, webhook("f1", []byte("x")))
	c.until(t, v, func() bool { return len(v.reports["f1"]) == 1 })
	waitState(t, a, "f1", persist.StateDelivered)
	acks := v.acked["f1"]

	c.send(t, webhook("f1", []byte("x")))
	c.until(t, v, func() bool { return len(v.reports["f1"]) == 2 })
	if r := v.reports["f1"][1]; r.Outcome != protocol.OutcomeDelivered {
		t.Fatalf("second answer %+v, want the delivered outcome", r)
	}
	if v.acked["f1"] != acks {
		t.Fatalf("a finished webhook was acked again (%d acks)", v.acked["f1"])
	}
	if n := len(tg.requests("f1")); n != 1 {
		t.Fatalf("delivered %d times, want once", n)
	}
}

// An agent of this version against a relay of version 1 (which refuses any other Hello
// version): it says Hello again in version 1 at once, and works; after the relay's GoAway it
// tries the newer version again (the relay may come back upgraded).
func TestAgentSpeaksVersion1ToAnOldRelay(t *testing.T) {
	tg := newTarget(t, nil)
	a, fr := runOnFakeRelay(t, tg)
	c, h := fr.accept(t)
	if h.Version != protocol.Version {
		t.Fatalf("first hello says %d", h.Version)
	}
	refused := time.Now()
	c.write(t, &protocol.Error{Code: protocol.CodeVersion, Reason: "protocol version 2 is not supported: this relay speaks 1"})
	c2, h2 := fr.accept(t)
	if h2.Version != protocol.MinVersion {
		t.Fatalf("hello after the refusal says %d, want %d", h2.Version, protocol.MinVersion)
	}
	if d := time.Since(refused); d > 2*time.Second {
		t.Fatalf("took %v to try again", d)
	}
	c2.write(t, &protocol.Welcome{SessionID: "old", Endpoints: h2.Endpoints, Window: 10, ServerTime: time.Now()})
	v := newView()
	c2.send(t, webhook("o1", []byte("x")))
	c2.until(t, v, func() bool { return len(v.reports["o1"]) == 1 })
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if !reported(t, a, "o1") { // a version-1 relay confirms nothing: written is reported
			return fmt.Errorf("not marked reported")
		}
		return nil
	})
	c2.write(t, &protocol.GoAway{Reason: "upgrade", ReconnectAfter: time.Millisecond})
	if _, h3 := fr.accept(t); h3.Version != protocol.Version {
		t.Fatalf("hello after GoAway says %d, want %d again", h3.Version, protocol.Version)
	}
}
