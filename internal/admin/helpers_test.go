package admin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hookrelay/hookrelay/persist"
)

// env is a Handler over a real store, served on 127.0.0.1 the way an owner mounts it.
type env struct {
	t       *testing.T
	store   *persist.Store
	h       *Handler
	srv     *httptest.Server
	token   string // "" = no auth
	replays chan string
}

func hashToken(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// newEnv starts a handler of side; a non-empty token turns auth on. edit may change the config.
func newEnv(t *testing.T, side Side, token string, edit ...func(*Config)) *env {
	t.Helper()
	st, err := persist.Open(persist.Options{Dir: t.TempDir(), Small: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{t: t, store: st, token: token, replays: make(chan string, 100)}
	cfg := Config{
		Side:     side,
		Store:    st,
		OnReplay: func(id string) { e.replays <- id },
		Log:      slog.New(slog.DiscardHandler),
	}
	if token != "" {
		cfg.TokenHash = hashToken(token)
	}
	for _, f := range edit {
		f(&cfg)
	}
	e.h, err = New(cfg)
	if err != nil {
		t.Fatalf("new handler: %v", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/admin/", e.h)
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	t.Cleanup(func() { e.h.Close() }) // runs first: event streams end, so srv.Close need not wait
	return e
}

// add appends a webhook to queue; edit may set fields before the append.
func (e *env) add(queue, body string, edit ...func(*persist.Record)) *persist.Record {
	e.t.Helper()
	r := &persist.Record{
		Queue:   queue,
		Method:  "POST",
		Path:    "/push",
		Query:   "a=1&b=2",
		Headers: []persist.Header{{Name: "Content-Type", Value: "application/json"}, {Name: "X-B", Value: "2"}, {Name: "X-A", Value: "1"}},
		Body:    []byte(body),
	}
	for _, f := range edit {
		f(r)
	}
	if err := e.store.Append(context.Background(), r); err != nil {
		e.t.Fatalf("append: %v", err)
	}
	return r
}

// do sends a request (with the Bearer token when the env has one) and returns the status and
// body. hdr holds name, value pairs.
func (e *env) do(method, path string, body io.Reader, hdr ...string) (int, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if e.token != "" {
		req.Header.Set("Authorization", "Bearer "+e.token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s %s: read: %v", method, path, err)
	}
	return resp.StatusCode, b
}

// getJSON does a GET, wants status want, and decodes the body into v.
func (e *env) getJSON(path string, want int, v any) {
	e.t.Helper()
	code, b := e.do("GET", path, nil)
	if code != want {
		e.t.Fatalf("GET %s: status %d, want %d; body %s", path, code, want, b)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			e.t.Fatalf("GET %s: decode %s: %v", path, b, err)
		}
	}
}

// wantError checks an error answer: status and a message mentioning each of words.
func wantError(t *testing.T, what string, code int, body []byte, wantCode int, words ...string) {
	t.Helper()
	if code != wantCode {
		t.Fatalf("%s: status %d, want %d; body %s", what, code, wantCode, body)
	}
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
		t.Fatalf("%s: want {\"error\": …}, got %s", what, body)
	}
	for _, w := range words {
		if !strings.Contains(e.Error, w) {
			t.Errorf("%s: error %q does not mention %q", what, e.Error, w)
		}
	}
}

type listResp struct {
	Webhooks []summary `json:"webhooks"`
}

func ids(l listResp) []string {
	out := make([]string, len(l.Webhooks))
	for i, s := range l.Webhooks {
		out[i] = s.ID
	}
	return out
}

func get(t *testing.T, st *persist.Store, id string) *persist.Record {
	t.Helper()
	r, err := st.Get(id)
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	return r
}
