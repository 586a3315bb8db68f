// Package admin is the admin API and web UI that both the relay and the agent serve under
// /admin/, written once over a Store: the agent's Badger store, or the relay's queue. The
// relay guards it with its admin token (Bearer, or a session cookie the UI gets by logging
// in); the agent serves it on its loopback admin address without a token. Side decides the state names and whether the agents list exists.
package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookrelay/hookrelay/persist"
)

// Side says which program serves the handler.
type Side int

const (
	Relay Side = iota // states accepted/sent/acked/delivered/dead; GET agents exists
	Agent             // states queued/delivering/retrying/delivered/dead; no agents list
)

// String returns "relay" or "agent".
func (s Side) String() string {
	if s == Agent {
		return "agent"
	}
	return "relay"
}

// AgentInfo is one connected agent session, as GET /admin/api/agents lists it (relay).
// SessionID and Remote are for the relay's own use (logs, tests): the API's JSON keeps its
// contracted shape without them.
type AgentInfo struct {
	AgentID     string    `json:"agent_id"`
	SessionID   string    `json:"-"`
	Endpoints   []string  `json:"endpoints"`
	Transport   string    `json:"transport"`
	Remote      string    `json:"-"`
	ConnectedAt time.Time `json:"connected_at"`
	InFlight    int       `json:"in_flight"`
	// Node is the relay holding the session (node_id), in cluster mode; "" otherwise.
	Node string `json:"node_id,omitempty"`
	// Group is the consumer group the agent serves (relay).
	Group string `json:"group,omitempty"`
}

// Store is what the API reads and changes. The agent's Badger store is one as it is; the relay
// passes its queue through a small adapter (every consumer group at once). Errors wrap
// persist's sentinels.
type Store interface {
	// List returns records matching f, newest first, without bodies.
	List(f persist.Filter) ([]*persist.Record, error)
	// Get returns a record with its body, or persist.ErrNotFound.
	Get(id string) (*persist.Record, error)
	// Replay makes an acked or finished record ready again, marked as a replay.
	Replay(id string) error
	// ReplayDead replays every dead record of queue ("": all) and returns how many.
	ReplayDead(queue string) (int, error)
	// Delete removes a record.
	Delete(id string) error
	// Stats describes each queue that has records.
	Stats() []persist.QueueStats
}

// Config configures a Handler. Only Store is required. The funcs are called from request
// goroutines, several at once, so they must be safe for concurrent use; Agents and Status are
// also called every few seconds per open UI (its event stream), so keep them cheap.
type Config struct {
	Side  Side
	Store Store
	// Agents lists the connected agents (relay). Nil = an empty list.
	Agents func() []AgentInfo
	// Status returns extra JSON for GET /admin/api/status, under "status" (connected relay,
	// transport, …). Optional.
	Status func() any
	// TokenHash is "sha256:" + lowercase hex of the admin token's SHA-256. "" = no auth (the
	// agent on loopback).
	TokenHash string
	// SessionTTL is how long a UI login lasts; default 12h.
	SessionTTL time.Duration
	// Series, when set, answers GET /admin/api/series (the UI's charts). The owner runs it.
	Series *Sampler
	// OnReplay, when set, is called after a replay: with the record's id, or with "" after a
	// bulk dead-letter replay.
	OnReplay func(id string)
	// Log receives the handler's logs; nil = slog.Default().
	Log *slog.Logger
}

// Handler serves everything under /admin/: the JSON API at /admin/api/, the UI, and (with a
// token) /admin/login and /admin/logout. Mount it with mux.Handle("/admin/", h); it expects the
// full path (no StripPrefix).
type Handler struct {
	cfg       Config
	log       *slog.Logger
	tokenHash []byte // nil = no auth
	mux       *http.ServeMux
	sessions  sessions
	failed    atomic.Uint64 // failed logins and wrong Bearer tokens
	streams   atomic.Int64  // open event streams
	refused   atomic.Uint64 // requests guard refused (guard.go)

	closeOnce sync.Once
	done      chan struct{} // closed by Close: event streams end
}

// New checks cfg and builds the Handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Store == nil {
		return nil, errors.New("admin: config: Store is required")
	}
	if cfg.Side != Relay && cfg.Side != Agent {
		return nil, fmt.Errorf("admin: config: unknown side %d", cfg.Side)
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	h := &Handler{
		cfg:  cfg,
		log:  cfg.Log,
		done: make(chan struct{}),
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	h.log = h.log.With("component", "admin")
	if cfg.TokenHash != "" {
		sum, err := parseTokenHash(cfg.TokenHash)
		if err != nil {
			return nil, fmt.Errorf("admin: config: token hash: %w", err)
		}
		h.tokenHash = sum
	} else if cfg.Side == Relay {
		h.log.Warn("admin API has no token: anyone who reaches it can read and replay webhooks")
	}
	h.sessions = newSessions(h.tokenHash)
	h.routes()
	return h, nil
}

// Close ends the open event streams (so an http.Server's Shutdown need not wait for them) and
// makes new ones end at once. Idempotent; it returns nil.
func (h *Handler) Close() error {
	h.closeOnce.Do(func() { close(h.done) })
	return nil
}

// FailedLogins counts wrong admin tokens seen so far: failed UI logins and API calls with a
// wrong Bearer token. The owner can export it as a metric.
func (h *Handler) FailedLogins() uint64 { return h.failed.Load() }

func (h *Handler) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /admin/api/webhooks", h.listWebhooks)
	m.HandleFunc("GET /admin/api/webhooks/{id}", h.getWebhook)
	m.HandleFunc("POST /admin/api/webhooks/{id}/replay", h.replayWebhook)
	m.HandleFunc("GET /admin/api/dead", h.listDead)
	m.HandleFunc("POST /admin/api/dead/replay", h.replayDead)
	m.HandleFunc("DELETE /admin/api/dead/{id}", h.deleteDead)
	m.HandleFunc("GET /admin/api/agents", h.listAgents)
	m.HandleFunc("GET /admin/api/status", h.status)
	m.HandleFunc("GET /admin/api/events", h.events)
	m.HandleFunc("GET /admin/api/series", h.series)
	m.HandleFunc("/admin/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such route: "+r.Method+" "+r.URL.Path)
	})
	m.HandleFunc("POST /admin/login", h.login)
	m.HandleFunc("POST /admin/logout", h.logout)
	m.HandleFunc("GET /admin/{$}", h.index)
	m.HandleFunc("GET /admin/{file}", h.asset)
	h.mux = m
}

// ServeHTTP authenticates the request (relay) and routes it.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cache-Control", "no-store")
	if !h.guard(w, r) || h.tokenHash != nil && !h.authorize(w, r) {
		return
	}
	h.mux.ServeHTTP(w, r)
}

// writeJSON writes v as JSON with status code.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// writeError writes {"error": msg} with status code.
func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
