package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/testutil"
	"github.com/hookrelay/hookrelay/persist"
)

type sseEvent struct {
	name, data string
}

// openEvents opens the event stream and returns its events on a channel (closed at EOF).
func openEvents(t *testing.T, e *env, ctx context.Context) <-chan sseEvent {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/admin/api/events", nil)
	if e.token != "" {
		req.Header.Set("Authorization", "Bearer "+e.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("open events: %v", err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("open events: %d", resp.StatusCode)
	}
	ch := make(chan sseEvent, 100)
	go func() {
		defer close(ch)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data = strings.TrimPrefix(line, "data: ")
			case line == "" && ev.name != "":
				ch <- ev
				ev = sseEvent{}
			}
		}
	}()
	return ch
}

// next waits for an event named name whose data satisfies match.
func next(t *testing.T, ch <-chan sseEvent, name string, match func(data string) bool) string {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("stream ended while waiting for a %s event", name)
			}
			if ev.name == name && match(ev.data) {
				return ev.data
			}
		case <-timeout:
			t.Fatalf("no matching %s event within 5s", name)
		}
	}
}

func summaryOf(t *testing.T, data string) summary {
	var s summary
	if err := json.Unmarshal([]byte(data), &s); err != nil {
		t.Fatalf("event data %q: %v", data, err)
	}
	return s
}

func TestEvents(t *testing.T) {
	e := newEnv(t, Relay, testToken)
	before := e.add("github", `{}`)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := openEvents(t, e, ctx)

	stats := next(t, ch, "stats", func(string) bool { return true })
	if !strings.Contains(stats, `"queues":[{"queue":"github"`) || !strings.Contains(stats, `"agents":[]`) {
		t.Errorf("stats event %s", stats)
	}
	// the first poll sends what is there, so a fresh client is in step
	next(t, ch, "webhook", func(d string) bool { return summaryOf(t, d).ID == before.ID })

	r := e.add("stripe", `{"type":"charge.succeeded"}`)
	got := summaryOf(t, next(t, ch, "webhook", func(d string) bool { return summaryOf(t, d).ID == r.ID }))
	if got.Endpoint != "stripe" || got.State != "accepted" || got.ReceivedAt == "" {
		t.Errorf("new webhook event %+v", got)
	}

	if err := e.store.Complete(r.ID, persist.StateDead, nil, "max attempts"); err != nil {
		t.Fatal(err)
	}
	next(t, ch, "webhook", func(d string) bool {
		s := summaryOf(t, d)
		return s.ID == r.ID && s.State == "dead"
	})

	if err := e.store.Delete(r.ID); err != nil {
		t.Fatal(err)
	}
	next(t, ch, "removed", func(d string) bool { return d == `{"id":"`+r.ID+`"}` })

	// the stream stops when the client goes away
	if e.h.streams.Load() != 1 {
		t.Fatalf("open streams %d, want 1", e.h.streams.Load())
	}
	cancel()
	testutil.WaitFor(t, 5*time.Second, "the stream to stop after the client left", func() bool { return e.h.streams.Load() == 0 })
}

func TestEventsEndOnClose(t *testing.T) {
	e := newEnv(t, Agent, "")
	ch := openEvents(t, e, context.Background())
	next(t, ch, "stats", func(d string) bool { return strings.Contains(d, `"side":"agent"`) })
	e.h.Close()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatal("stream still open 5s after Close")
		}
	}
}
