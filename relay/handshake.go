package relay

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"time"
)

// Providers' URL handshakes, answered by the relay itself so that a provider can be
// registered while every agent is offline. A handshake matches only its exact request;
// everything else takes the usual way (stored, 202). Handshakes are never stored.
//
// Order (DESIGN.md, second wave): the address and transport rules (ip_allow, mtls, basic) run
// before any of this; body-signature schemes run on the slack and zoom handshakes, which
// those providers sign, and not on the meta, graph, twitter and dropbox ones, which theirs do
// not. A responder that signs a token (zoom, twitter) signs only tokens of tokenChars, so it
// can never be made to sign something shaped like a body or a header.

// Handshake providers, as the keys of the handshake block; the provider label of
// hookrelay_handshakes_total.
const (
	providerSlack   = "slack"
	providerMeta    = "meta"
	providerGraph   = "graph"
	providerZoom    = "zoom"
	providerTwitter = "twitter"
	providerDropbox = "dropbox"
)

// Results of hookrelay_handshakes_total.
const (
	handshakeAnswered     = "answered"     // 200 with the provider's expected answer
	handshakeBadRequest   = "bad_request"  // 400: the token is malformed, empty, repeated or too long
	handshakeForbidden    = "forbidden"    // 403: meta's verify token is wrong
	handshakeUnauthorized = "unauthorized" // 401: the body signature failed (slack, zoom)
)

const (
	// maxEchoed bounds a token the relay echoes back (slack, meta, graph, dropbox).
	maxEchoed = 1024
	// maxSigned bounds a token the relay signs (zoom plainToken, twitter crc_token).
	maxSigned = 256
	// maxHandshakeBody bounds the bodies parsed for a slack or zoom handshake: theirs are a
	// few hundred bytes, and larger webhooks need not be parsed at all.
	maxHandshakeBody = 16 << 10
)

// handshakes are an endpoint's compiled responders; nil when it has none.
type handshakes struct {
	slack, graph, dropbox bool
	metaToken             [sha256.Size]byte // sha256 of the verify token, compared in constant time
	meta                  bool
	zoomKey               []byte // nil without zoom
	twitterKey            []byte // nil without twitter
}

func newHandshakes(c *HandshakeConfig) *handshakes {
	if c == nil {
		return nil
	}
	h := &handshakes{slack: c.Slack != nil, graph: c.Graph != nil, dropbox: c.Dropbox != nil}
	if c.Meta != nil {
		h.meta = true
		h.metaToken = sha256.Sum256([]byte(c.Meta.VerifyToken))
	}
	if c.Zoom != nil {
		h.zoomKey = []byte(c.Zoom.Secret)
	}
	if c.Twitter != nil {
		h.twitterKey = []byte(c.Twitter.ConsumerSecret)
	}
	return h
}

// answerQueryHandshake answers the handshakes that are a query and no body (meta, graph,
// twitter, dropbox), before the body is read; it reports whether it answered. Address and
// transport rules have passed; no body signature is checked, since these providers sign none.
func (s *Server) answerQueryHandshake(w http.ResponseWriter, r *http.Request, ep *endpoint) bool {
	h := ep.handshakes
	if h == nil || !(h.meta || h.graph || h.twitterKey != nil || h.dropbox) || r.ContentLength != 0 || r.URL.RawQuery == "" {
		return false
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return false // not a query any provider sends: the usual way
	}
	get := r.Method == http.MethodGet
	switch {
	case h.meta && get && q.Get("hub.mode") == "subscribe" && q.Has("hub.challenge"):
		sum := sha256.Sum256([]byte(q.Get("hub.verify_token")))
		if len(q["hub.verify_token"]) != 1 || !hmac.Equal(sum[:], h.metaToken[:]) {
			s.refuseHandshake(w, ep, providerMeta, http.StatusForbidden, handshakeForbidden, "hub.verify_token does not match")
			return true
		}
		s.echoHandshake(w, ep, providerMeta, "hub.challenge", q["hub.challenge"])
	case h.graph && q.Has("validationToken"):
		s.echoHandshake(w, ep, providerGraph, "validationToken", q["validationToken"])
	case h.twitterKey != nil && get && q.Has("crc_token"):
		token, ok := s.signedToken(w, ep, providerTwitter, "crc_token", q["crc_token"])
		if !ok {
			return true
		}
		m := hmac.New(sha256.New, h.twitterKey)
		m.Write([]byte(token))
		s.answerHandshakeJSON(w, ep, providerTwitter,
			map[string]string{"response_token": "sha256=" + base64.StdEncoding.EncodeToString(m.Sum(nil))})
	case h.dropbox && get && q.Has("challenge"):
		s.echoHandshake(w, ep, providerDropbox, "challenge", q["challenge"])
	default:
		return false
	}
	return true
}

// answerBodyHandshake answers the handshakes carried in a JSON body (slack, zoom), once the
// body is read; it reports whether it answered. It runs the endpoint's body-signature
// schemes itself, since these providers sign their handshakes.
func (s *Server) answerBodyHandshake(w http.ResponseWriter, r *http.Request, ep *endpoint, body []byte, now time.Time) bool {
	h := ep.handshakes
	if h == nil || !(h.slack || h.zoomKey != nil) || r.Method != http.MethodPost || len(body) > maxHandshakeBody {
		return false
	}
	provider, field, token, ok := matchBodyHandshake(h, body)
	if !ok {
		return false
	}
	if err := ep.verifier.CheckBody(r, body, now); err != nil {
		s.metrics.handshake(ep.name, provider, handshakeUnauthorized)
		s.refuseVerify(w, r, ep, err)
		return true
	}
	if provider == providerSlack {
		s.echoHandshake(w, ep, provider, field, token)
		return true
	}
	plain, ok := s.signedToken(w, ep, provider, field, token)
	if !ok {
		return true
	}
	m := hmac.New(sha256.New, h.zoomKey)
	m.Write([]byte(plain))
	s.answerHandshakeJSON(w, ep, provider, map[string]string{"plainToken": plain, "encryptedToken": hex.EncodeToString(m.Sum(nil))})
	return true
}

// matchBodyHandshake recognises slack's url_verification and zoom's endpoint.url_validation
// by their exact keys. token holds the challenge (or plainToken) when it is a JSON string,
// else nothing, which the caller answers 400.
func matchBodyHandshake(h *handshakes, body []byte) (provider, field string, token []string, ok bool) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 || body[0] != '{' {
		return "", "", nil, false
	}
	var doc map[string]json.RawMessage
	if json.Unmarshal(body, &doc) != nil {
		return "", "", nil, false
	}
	str := func(raw json.RawMessage) []string {
		var s string
		if raw == nil || json.Unmarshal(raw, &s) != nil {
			return nil
		}
		return []string{s}
	}
	if h.slack && isString(doc["type"], "url_verification") {
		return providerSlack, "challenge", str(doc["challenge"]), true
	}
	if h.zoomKey != nil && isString(doc["event"], "endpoint.url_validation") {
		var payload map[string]json.RawMessage
		json.Unmarshal(doc["payload"], &payload) // not an object: no plainToken, answered 400
		return providerZoom, "payload.plainToken", str(payload["plainToken"]), true
	}
	return "", "", nil, false
}

// isString reports whether raw is the JSON string want.
func isString(raw json.RawMessage, want string) bool {
	var s string
	return raw != nil && json.Unmarshal(raw, &s) == nil && s == want
}

// echoHandshake answers 200 text/plain with the one value of field, or 400 when there is
// not exactly one non-empty value of at most maxEchoed bytes.
func (s *Server) echoHandshake(w http.ResponseWriter, ep *endpoint, provider, field string, vals []string) {
	if len(vals) != 1 || vals[0] == "" || len(vals[0]) > maxEchoed {
		s.refuseHandshake(w, ep, provider, http.StatusBadRequest, handshakeBadRequest,
			"handshake "+provider+": "+field+" must be given once, 1 to 1024 bytes")
		return
	}
	s.metrics.handshake(ep.name, provider, handshakeAnswered)
	s.log.Debug("handshake answered", "endpoint", ep.name, "provider", provider)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	w.Write([]byte(vals[0]))
}

// signedToken returns the one value of field when it is a token the relay may sign, else
// answers 400 and reports false.
func (s *Server) signedToken(w http.ResponseWriter, ep *endpoint, provider, field string, vals []string) (string, bool) {
	if len(vals) != 1 || !validSignedToken(vals[0]) {
		s.refuseHandshake(w, ep, provider, http.StatusBadRequest, handshakeBadRequest,
			"handshake "+provider+": "+field+" must be given once and match [A-Za-z0-9._~+/=-]{1,256}")
		return "", false
	}
	return vals[0], true
}

// validSignedToken reports whether s matches [A-Za-z0-9._~+/=-]{1,256}.
func validSignedToken(s string) bool {
	if s == "" || len(s) > maxSigned {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.', c == '_', c == '~', c == '+', c == '/', c == '=', c == '-':
		default:
			return false
		}
	}
	return true
}

func (s *Server) answerHandshakeJSON(w http.ResponseWriter, ep *endpoint, provider string, v map[string]string) {
	s.metrics.handshake(ep.name, provider, handshakeAnswered)
	s.log.Debug("handshake answered", "endpoint", ep.name, "provider", provider)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) refuseHandshake(w http.ResponseWriter, ep *endpoint, provider string, code int, result, msg string) {
	s.metrics.handshake(ep.name, provider, result)
	s.log.Debug("handshake refused", "endpoint", ep.name, "provider", provider, "result", result)
	writeError(w, code, msg)
}
