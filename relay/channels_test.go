package relay

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/testutil"
)

// noRedirect is a client that shows redirects instead of following them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func newChannel(t *testing.T, s *Server, method string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, s.url("/new"), nil)
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Location")
}

func TestChannelsOff(t *testing.T) {
	s := startServer(t, nil)
	if code, _ := newChannel(t, s, "GET"); code != http.StatusNotFound {
		t.Errorf("/new with channels off: %d, want 404", code)
	}
}

// TestChannels: GET and HEAD /new redirect to a fresh random stream-only smee endpoint that
// takes webhooks and streams them; past per_client_per_hour /new answers 429; a channel
// unused for ttl is gone, and survives a restart until then.
func TestChannels(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, func(c *Config) {
		c.DataDir = dir
		c.Channels = ChannelsConfig{Enabled: true, TTL: 2 * time.Second, PerClientPerHour: 3}
	})
	var names []string
	for _, m := range []string{"GET", "HEAD", "GET"} {
		code, loc := newChannel(t, s, m)
		prefix := "http://" + s.Addr() + "/h/"
		if code != http.StatusTemporaryRedirect || !strings.HasPrefix(loc, prefix) {
			t.Fatalf("%s /new: %d %q, want 307 to %s…", m, code, loc, prefix)
		}
		name := strings.TrimPrefix(loc, prefix)
		if len(name) < smeeMinName || !validName(name) {
			t.Fatalf("channel name %q: want a valid name of at least %d characters", name, smeeMinName)
		}
		names = append(names, name)
	}
	if names[0] == names[1] || names[1] == names[2] {
		t.Fatalf("channel names repeat: %v", names)
	}
	if code, _ := newChannel(t, s, "GET"); code != http.StatusTooManyRequests {
		t.Errorf("4th /new within the hour: %d, want 429", code)
	}
	if v := counterValue(t, s.smeeM.channelsRefused); v != 1 {
		t.Errorf("channels refused counter %v, want 1", v)
	}

	st := openStream(t, s.url("/h/"+names[0]), "")
	st.waitReady(t)
	id := accept(t, s, "/h/"+names[0], []byte(`{"hello":"channel"}`))
	if ev := st.next(t); ev.ID != id {
		t.Fatalf("channel stream got %s, want %s", ev.ID, id)
	}
	// names[1] and names[2] see no use: they expire; names[0] has a stream, so it stays.
	testutil.WaitFor(t, 15*time.Second, "unused channels to expire", func() bool {
		return s.channels.lookup(names[1]) == nil && s.channels.lookup(names[2]) == nil &&
			counterValue(t, s.smeeM.channelsExpired) == 2
	})
	if code, _, _ := post(t, s, "POST", "/h/"+names[1], []byte(`{}`), nil); code != http.StatusNotFound {
		t.Errorf("POST to an expired channel: %d, want 404", code)
	}
	if s.channels.lookup(names[0]) == nil {
		t.Error("a channel with a stream attached expired")
	}
}

// TestChannelsRestart: the channels list survives a restart.
func TestChannelsRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := func() *Config {
		return &Config{Addr: "127.0.0.1:0", DataDir: dir, Endpoints: []Endpoint{{Name: "ep"}},
			Channels: ChannelsConfig{Enabled: true}}
	}
	s, stop := runServer(t, cfg(), testLogger(t))
	_, loc := newChannel(t, s, "GET")
	name := loc[strings.LastIndex(loc, "/")+1:]
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2, stop2 := runServer(t, cfg(), testLogger(t))
	defer func() { stop2(); s2.Close() }()
	accept(t, s2, "/h/"+name, []byte(`{}`))
}
