package admin

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hookrelay/hookrelay/protocol"
)

const (
	cookieName  = "hookrelay_admin"
	csrfHeader  = "X-Requested-With"
	csrfValue   = "hookrelay"
	maxSessions = 10000 // logged-out sessions remembered until they expire
)

// parseTokenHash reads "sha256:" + 64 hex digits.
func parseTokenHash(s string) ([]byte, error) {
	sum, err := protocol.ParseSHA256(s)
	if err != nil {
		return nil, err
	}
	return sum[:], nil
}

// checkToken compares the token's SHA-256 with the configured hash in constant time.
func (h *Handler) checkToken(tok string) bool {
	sum := sha256.Sum256([]byte(tok))
	return subtle.ConstantTimeCompare(sum[:], h.tokenHash) == 1
}

// authorize lets a request through when it carries the right Bearer token or a live session
// cookie (and, for a mutating request with a cookie, the CSRF header). Otherwise it answers:
// the login page for GET /admin/, else 401 JSON. It reports whether the request may go on.
func (h *Handler) authorize(w http.ResponseWriter, r *http.Request) bool {
	switch {
	case r.Method == http.MethodPost && (r.URL.Path == "/admin/login" || r.URL.Path == "/admin/logout"),
		r.Method == http.MethodGet && r.URL.Path == "/admin/style.css":
		return true // login checks the token itself; logout only ends the session it is sent
	}
	if auth := r.Header.Get("Authorization"); auth != "" {
		scheme, tok, _ := strings.Cut(auth, " ")
		if strings.EqualFold(scheme, "Bearer") && h.checkToken(strings.TrimSpace(tok)) {
			return true
		}
		h.failed.Add(1)
		h.log.Warn("wrong admin token", "remote", r.RemoteAddr, "path", r.URL.Path)
		h.deny(w, r, http.StatusUnauthorized, "wrong admin token")
		return false
	}
	if c, err := r.Cookie(cookieName); err == nil && h.sessions.valid(c.Value, time.Now()) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead &&
			r.Header.Get(csrfHeader) != csrfValue {
			writeError(w, http.StatusForbidden,
				"a request made with the session cookie needs the header "+csrfHeader+": "+csrfValue)
			return false
		}
		return true
	}
	h.deny(w, r, http.StatusOK, "admin token required: Authorization: Bearer <token>")
	return false
}

// deny answers an unauthenticated request: the login page for the UI's page (with pageCode),
// 401 JSON for everything else.
func (h *Handler) deny(w http.ResponseWriter, r *http.Request, pageCode int, msg string) {
	if r.Method == http.MethodGet && r.URL.Path == "/admin/" {
		h.loginPage(w, pageCode, "")
		return
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="hookrelay admin"`)
	writeError(w, http.StatusUnauthorized, msg)
}

// login checks the token from the form field or JSON {"token"}, starts a session and sets its
// cookie, then redirects to /admin/ (a form) or answers 204 (JSON).
func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	if h.tokenHash == nil {
		writeError(w, http.StatusNotFound, "no login: this admin API has no token")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	isJSON := ct == "application/json"
	var tok string
	if isJSON {
		var body struct {
			Token string `json:"token"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			writeError(w, http.StatusBadRequest, `bad JSON: want {"token": "…"}`)
			return
		}
		tok = body.Token
	} else {
		tok = r.PostFormValue("token")
	}
	if tok == "" || !h.checkToken(tok) {
		h.failed.Add(1)
		h.log.Warn("failed admin login", "remote", r.RemoteAddr)
		if isJSON {
			writeError(w, http.StatusUnauthorized, "wrong admin token")
		} else {
			h.loginPage(w, http.StatusUnauthorized, "Wrong token.")
		}
		return
	}
	id := h.sessions.add(time.Now().Add(h.cfg.SessionTTL))
	http.SetCookie(w, &http.Cookie{
		Name:     cookieName,
		Value:    id,
		Path:     "/admin",
		MaxAge:   int(h.cfg.SessionTTL / time.Second),
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteStrictMode,
	})
	h.log.Info("admin login", "remote", r.RemoteAddr)
	if isJSON {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	http.Redirect(w, r, "/admin/", http.StatusSeeOther)
}

// logout ends the session of the cookie sent, clears the cookie, and redirects to /admin/ (or
// answers 204 to a script that sent X-Requested-With).
func (h *Handler) logout(w http.ResponseWriter, r *http.Request) {
	if h.tokenHash == nil {
		writeError(w, http.StatusNotFound, "no logout: this admin API has no token")
		return
	}
	if c, err := r.Cookie(cookieName); err == nil {
		h.sessions.remove(c.Value)
	}
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: "", Path: "/admin", MaxAge: -1,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
	if r.Header.Get(csrfHeader) != "" {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	http.Redirect(w, r, "/admin/", http.StatusSeeOther)
}

// sessions are UI logins. A session is a signed cookie (its expiry and a random nonce, with
// an HMAC under a key derived from the admin token's hash), not an entry held in this process:
// every relay of a cluster, which share their config, accepts a login made on any of them,
// and a login outlives a restart. Changing admin_token ends every session. Logout revokes
// the cookie's nonce in this process until it would have expired (other relays of a cluster
// accept it until then: the browser drops the cookie either way).
type sessions struct {
	key     []byte
	mu      sync.Mutex
	revoked map[string]time.Time // nonce → expiry
}

const sessionPrefix = "v1."

func newSessions(tokenHash []byte) sessions {
	mac := hmac.New(sha256.New, tokenHash)
	mac.Write([]byte("hookrelay admin session key"))
	return sessions{key: mac.Sum(nil), revoked: map[string]time.Time{}}
}

func (s *sessions) sign(payload []byte) []byte {
	mac := hmac.New(sha256.New, s.key)
	mac.Write(payload)
	return mac.Sum(nil)
}

// add starts a session until exp and returns its cookie value.
func (s *sessions) add(exp time.Time) string {
	payload := make([]byte, 8, 8+16)
	binary.BigEndian.PutUint64(payload, uint64(exp.UnixMilli()))
	payload = append(payload, []byte(rand.Text())[:16]...)
	enc := base64.RawURLEncoding
	return sessionPrefix + enc.EncodeToString(payload) + "." + enc.EncodeToString(s.sign(payload))
}

// parse checks a cookie value's signature and returns its expiry and nonce.
func (s *sessions) parse(v string) (time.Time, string, bool) {
	rest, ok := strings.CutPrefix(v, sessionPrefix)
	if !ok || len(rest) > 128 {
		return time.Time{}, "", false
	}
	p, m, ok := strings.Cut(rest, ".")
	if !ok {
		return time.Time{}, "", false
	}
	enc := base64.RawURLEncoding
	payload, err1 := enc.DecodeString(p)
	sum, err2 := enc.DecodeString(m)
	if err1 != nil || err2 != nil || len(payload) != 8+16 || !hmac.Equal(sum, s.sign(payload)) {
		return time.Time{}, "", false
	}
	return time.UnixMilli(int64(binary.BigEndian.Uint64(payload))), string(payload[8:]), true
}

// valid reports whether v is a live session at now: signed with this key, not expired, not
// logged out here.
func (s *sessions) valid(v string, now time.Time) bool {
	exp, nonce, ok := s.parse(v)
	if !ok || !now.Before(exp) {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, out := s.revoked[nonce]
	return !out
}

// remove revokes a session in this process until its expiry. The set is bounded: expired
// entries go first, then the one closest to expiry.
func (s *sessions) remove(v string) {
	exp, nonce, ok := s.parse(v)
	now := time.Now()
	if !ok || !now.Before(exp) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, e := range s.revoked {
		if now.After(e) {
			delete(s.revoked, k)
		}
	}
	if len(s.revoked) >= maxSessions {
		var first string
		for k, e := range s.revoked {
			if first == "" || e.Before(s.revoked[first]) {
				first = k
			}
		}
		delete(s.revoked, first)
	}
	s.revoked[nonce] = exp
}
