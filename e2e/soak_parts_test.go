package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The soak tests are long (minutes): they run only with HOOKRELAY_SOAK=1, which .ci/run sets
// in a step of their own.
func needSoak(t *testing.T) {
	t.Helper()
	if os.Getenv("HOOKRELAY_SOAK") != "1" {
		t.Skip("soak test: runs only with HOOKRELAY_SOAK=1 (.ci/run sets it; takes minutes)")
	}
}

// soakBody is webhook seq's body: 0 to 4 KiB of binary, the same for the same seq.
func soakBody(seq int) []byte {
	n := (seq * 7919) % 4097
	if seq%41 == 0 {
		n = 0
	}
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(seq), 11))
	for i := range b {
		b[i] = byte(r.UintN(256))
	}
	return b
}

func soakSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// soakPath is the ingress path suffix and query of webhook seq; the target sees it after the
// route's own path "/t".
func soakPath(seq int) string { return fmt.Sprintf("/in/%d?n=%d&x=%%2F", seq, seq) }

// accepted is one webhook the relay answered 202.
type accepted struct {
	id  string
	seq int
}

// soakSender posts webhooks until each gets a 202, and keeps the books: every 202'd id, and
// for each webhook how many attempts ended so that the sender cannot know whether the relay
// stored it (the connection broke after the request went out). Such an attempt may have
// been stored and delivered under an id the sender never saw.
type soakSender struct {
	client  *http.Client
	ingress string // http://host:port/h/endpoint
	// ingresses, when set, are several relays' ingress URLs (a cluster behind a load
	// balancer): webhook seq goes to one of them, a retry to the next.
	ingresses []string

	mu        sync.Mutex
	ok        []accepted // in the order the 202s were read
	ids       map[string]int
	via       map[string]int // id -> index in ingresses of the relay that answered 202
	ambiguous map[int]int    // seq -> attempts of unknown outcome
	answers   map[string]int // "202", "429", "503", "dial error", "conn error", ... -> count
}

func newSoakSender(client *http.Client, ingress string) *soakSender {
	return &soakSender{client: client, ingress: ingress, ids: map[string]int{}, via: map[string]int{},
		ambiguous: map[int]int{}, answers: map[string]int{}}
}

// post sends webhook seq until the relay answers 202 or ctx ends; it reports whether it
// was accepted. 429, 503 and 507 are retried after Retry-After (at most 1s here), broken
// connections after 50ms; any other answer is counted (and retried: the test fails on it).
func (s *soakSender) post(ctx context.Context, seq int) bool {
	b := soakBody(seq)
	sum := soakSum(b)
	for try := 0; ctx.Err() == nil; try++ {
		ingress, via := s.ingress, 0
		if n := len(s.ingresses); n > 0 {
			via = (seq + try) % n
			ingress = s.ingresses[via]
		}
		req, err := http.NewRequestWithContext(ctx, "POST", ingress+soakPath(seq), bytes.NewReader(b))
		if err != nil {
			panic(err)
		}
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("X-Soak-Seq", strconv.Itoa(seq))
		req.Header.Set("X-Soak-Sum", sum)
		resp, err := s.client.Do(req)
		if err != nil {
			s.failed(seq, err)
			pause(ctx, 50*time.Millisecond)
			continue
		}
		var got struct{ ID string }
		derr := json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		code := resp.StatusCode
		switch {
		case code == 202 && derr == nil && got.ID != "":
			s.mu.Lock()
			s.ok = append(s.ok, accepted{got.ID, seq})
			s.ids[got.ID] = seq
			s.via[got.ID] = via
			s.answers["202"]++
			s.mu.Unlock()
			return true
		case code == 202: // stored, but the id was lost on the way back
			s.count("202 without a readable id", seq, true)
			pause(ctx, 50*time.Millisecond)
		case code == 429 || code == 503 || code == 507:
			s.count(strconv.Itoa(code), seq, false)
			ra, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
			pause(ctx, min(time.Duration(max(ra, 0))*time.Second, time.Second)+20*time.Millisecond)
		default:
			s.count(fmt.Sprintf("unexpected %d", code), seq, false)
			pause(ctx, 100*time.Millisecond)
		}
	}
	return false
}

// failed books an attempt that got no answer: a failed dial never reached the relay; any
// other error may have come after the relay stored the webhook.
func (s *soakSender) failed(seq int, err error) {
	if op := (*net.OpError)(nil); errors.As(err, &op) && op.Op == "dial" {
		s.count("dial error", seq, false)
		return
	}
	s.count("conn error", seq, true)
}

func (s *soakSender) count(answer string, seq int, ambiguous bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answers[answer]++
	if ambiguous {
		s.ambiguous[seq]++
	}
}

func (s *soakSender) accepted() []accepted {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ok)
}

func (s *soakSender) summary() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("answers %v; %d webhooks had attempts of unknown outcome", s.answers, len(s.ambiguous))
}

// pause waits d or until ctx ends: a retry's backoff, not a wait for a condition.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// soakTarget records every request in arrival order and checks each one byte-exact against
// what webhook X-Soak-Seq was: body, checksum header, path suffix, query, ids.
type soakTarget struct {
	delay time.Duration

	mu       sync.Mutex
	arrivals []soakArrival
	byID     map[string][]int // indexes into arrivals
	bad      []string         // the first problems found
	badN     int
}

type soakArrival struct {
	id  string
	seq int
	at  time.Time
}

func newSoakTarget(delay time.Duration) *soakTarget {
	return &soakTarget{delay: delay, byID: map[string][]int{}}
}

func (tg *soakTarget) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	at := time.Now()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		w.WriteHeader(500)
		return
	}
	if tg.delay > 0 {
		time.Sleep(tg.delay) // a target that takes its time, so that a backlog builds
	}
	id := r.Header.Get("hookrelay-id")
	seq, _ := strconv.Atoi(r.Header.Get("X-Soak-Seq"))
	var problem string
	want := soakSum(soakBody(seq))
	switch {
	case id == "":
		problem = "no hookrelay-id"
	case r.Header.Get("webhook-id") != id:
		problem = fmt.Sprintf("webhook-id %q", r.Header.Get("webhook-id"))
	case r.Method != "POST":
		problem = "method " + r.Method
	case r.Header.Get("X-Soak-Sum") != want:
		problem = fmt.Sprintf("X-Soak-Sum %q, want %s", r.Header.Get("X-Soak-Sum"), want)
	case soakSum(b) != want:
		problem = fmt.Sprintf("body of %d bytes is not webhook %d's (%d bytes)", len(b), seq, len(soakBody(seq)))
	case r.URL.RequestURI() != "/t"+soakPath(seq):
		problem = fmt.Sprintf("URI %q, want %q", r.URL.RequestURI(), "/t"+soakPath(seq))
	case r.Header.Get("Content-Type") != "application/octet-stream":
		problem = "content-type " + r.Header.Get("Content-Type")
	}
	tg.mu.Lock()
	tg.byID[id] = append(tg.byID[id], len(tg.arrivals))
	tg.arrivals = append(tg.arrivals, soakArrival{id, seq, at})
	if problem != "" {
		if tg.badN++; len(tg.bad) < 10 {
			tg.bad = append(tg.bad, fmt.Sprintf("%s (seq %d): %s", id, seq, problem))
		}
	}
	tg.mu.Unlock()
	w.WriteHeader(200)
}

// missing returns the accepted ids that have not arrived.
func (tg *soakTarget) missing(acc []accepted) []string {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	var out []string
	for _, a := range acc {
		if len(tg.byID[a.id]) == 0 {
			out = append(out, a.id)
		}
	}
	return out
}

// checkUnknown fails for every id that arrived without a sender having got its 202, unless
// its webhook had attempts of unknown outcome (at most that many such ids per webhook).
// It returns how many such ids arrived.
func (tg *soakTarget) checkUnknown(t *testing.T, s *soakSender) int {
	t.Helper()
	tg.mu.Lock()
	defer tg.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	unknown := map[int]int{}
	for id, idx := range tg.byID {
		if _, ok := s.ids[id]; !ok {
			unknown[tg.arrivals[idx[0]].seq]++
		}
	}
	n := 0
	for seq, c := range unknown {
		n += c
		if c > s.ambiguous[seq] {
			t.Errorf("webhook %d arrived under %d ids no sender got a 202 for, but only %d of its attempts could have been stored unseen",
				seq, c, s.ambiguous[seq])
		}
	}
	return n
}

// relayAdmin reads the relay's admin API and metrics with the admin token.
type relayAdmin struct {
	client *http.Client
	base   string // http://host:port
	token  string
}

func (a relayAdmin) get(path string, v any) (int, error) {
	req, err := http.NewRequest("GET", a.base+path, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}
	if s, ok := v.(*string); ok {
		b, err := io.ReadAll(resp.Body)
		*s = string(b)
		return 200, err
	}
	return 200, json.NewDecoder(resp.Body).Decode(v)
}

// states returns the relay's state of each id ("404" when it has none, "error: …" when it
// could not be asked), asking with a few requests in parallel.
func (a relayAdmin) states(ids []string) map[string]string {
	out := make(map[string]string, len(ids))
	var mu sync.Mutex
	work := make(chan string)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for id := range work {
				var d struct{ State string }
				code, err := a.get("/admin/api/webhooks/"+id, &d)
				st := d.State
				switch {
				case err != nil:
					st = "error: " + err.Error()
				case code != 200:
					st = strconv.Itoa(code)
				}
				mu.Lock()
				out[id] = st
				mu.Unlock()
			}
		})
	}
	for _, id := range ids {
		work <- id
	}
	close(work)
	wg.Wait()
	return out
}

// listCount counts the webhooks the relay lists for endpoint in state (at most 10000).
func (a relayAdmin) listCount(endpoint, state string) (int, error) {
	var l struct{ Webhooks []json.RawMessage }
	code, err := a.get(fmt.Sprintf("/admin/api/webhooks?endpoint=%s&state=%s&limit=10000", endpoint, state), &l)
	if err == nil && code != 200 {
		err = fmt.Errorf("list %s: %d", state, code)
	}
	return len(l.Webhooks), err
}

// gauge reads one of the relay's /metrics values for an endpoint.
func (a relayAdmin) gauge(name, endpoint string) (float64, error) {
	text, err := a.metrics()
	if err != nil {
		return 0, err
	}
	prefix := fmt.Sprintf("%s{endpoint=%q} ", name, endpoint)
	for line := range strings.Lines(text) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), prefix); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("/metrics has no %s for endpoint %s", name, endpoint)
}

// agentConnected reports whether the relay lists a session of agentID.
func (a relayAdmin) agentConnected(agentID string) error {
	_, err := a.agentTransport(agentID)
	return err
}

// agentTransport returns the transport of agentID's session, as the relay lists it.
func (a relayAdmin) agentTransport(agentID string) (string, error) {
	m, err := a.agents()
	if err != nil {
		return "", err
	}
	if tr, ok := m[agentID]; ok {
		return tr, nil
	}
	return "", fmt.Errorf("the relay lists no session of %s", agentID)
}

// agents maps the ids of the agents the relay lists to their transports.
func (a relayAdmin) agents() (map[string]string, error) {
	var l struct {
		Agents []struct {
			AgentID   string `json:"agent_id"`
			Transport string `json:"transport"`
		}
	}
	code, err := a.get("/admin/api/agents", &l)
	if err != nil {
		return nil, err
	}
	if code != 200 {
		return nil, fmt.Errorf("/admin/api/agents: %d", code)
	}
	m := map[string]string{}
	for _, ag := range l.Agents {
		m[ag.AgentID] = ag.Transport
	}
	return m, nil
}

// sessionsEnded reads hookrelay_tunnel_sessions_ended_total by reason (non-zero ones).
func (a relayAdmin) sessionsEnded() (map[string]int, error) {
	text, err := a.metrics()
	if err != nil {
		return nil, err
	}
	const prefix = `hookrelay_tunnel_sessions_ended_total{reason="`
	m := map[string]int{}
	for line := range strings.Lines(text) {
		rest, ok := strings.CutPrefix(line, prefix)
		if !ok {
			continue
		}
		var reason string
		var n float64
		reason, rest, _ = strings.Cut(rest, `"} `)
		if _, err := fmt.Sscan(rest, &n); err != nil {
			return nil, fmt.Errorf("metrics line %q: %w", line, err)
		}
		if n > 0 {
			m[reason] = int(n)
		}
	}
	return m, nil
}

// metrics returns the relay's /metrics text.
func (a relayAdmin) metrics() (string, error) {
	var text string
	code, err := a.get("/metrics", &text)
	if err == nil && code != 200 {
		err = fmt.Errorf("/metrics: %d", code)
	}
	return text, err
}

// tunnelUps counts the sessions p has logged as up, over all its runs.
func tunnelUps(p *proc) int {
	b, _ := os.ReadFile(p.log)
	return bytes.Count(b, []byte(`"msg":"tunnel up"`))
}
