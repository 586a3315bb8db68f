package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hookrelay/hookrelay/persist"
	"github.com/hookrelay/hookrelay/protocol"
)

// Headers hookrelay sets toward the target.
const (
	headerID      = "Hookrelay-Id"
	headerAttempt = "Hookrelay-Attempt"
	headerReplay  = "Hookrelay-Replay"
	headerWebhook = "Webhook-Id"
)

// ownHeaders are not forwarded: the client sets them itself from the request (Host from the
// target, Content-Length from the body, Expect never). Hop-by-hop headers are not forwarded
// either (protocol.HopByHop).
var ownHeaders = map[string]bool{"Expect": true, "Host": true, "Content-Length": true}

// buildRequest makes attempt n of rec toward the route's target. Only the target's scheme,
// host and port are ever dialled: the record contributes the path suffix and query.
func (d *deliverer) buildRequest(ctx context.Context, rec *persist.Record, n int) (*http.Request, error) {
	u, err := targetURL(d.r.targetURL, rec.Path, rec.Query)
	if err != nil {
		return nil, err
	}
	body, size, err := d.requestBody(rec)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, rec.Method, d.r.Target, body)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.URL, req.Host = u, u.Host // u as built: a String/Parse round trip may re-escape it
	req.ContentLength = size
	if rec.Body == nil && size > 0 {
		// Streamed from the store: a retry of the request on a fresh connection (the client
		// may make one) reads it again from the start.
		req.GetBody = func() (io.ReadCloser, error) { return d.a.store.Body(rec.ID) }
	}
	req.Header = targetHeaders(rec, n, d.headers, d.r.replace)
	if d.r.Sign != nil {
		if err := d.sign(req.Header, rec); err != nil {
			return nil, err
		}
	}
	return req, nil
}

// requestBody is the body of a delivery of rec and its length: rec.Body, or streamed from
// the store when the lease left it out (a large one), so it is never whole in memory.
func (d *deliverer) requestBody(rec *persist.Record) (io.Reader, int64, error) {
	if rec.Body != nil || rec.BodyLen == 0 {
		return bytes.NewReader(rec.Body), int64(len(rec.Body)), nil
	}
	rc, err := d.a.store.Body(rec.ID)
	if err != nil {
		return nil, 0, fmt.Errorf("read body: %w", err)
	}
	return rc, rec.BodyLen, nil
}

// targetURL appends the escaped path suffix and the raw query to the target URL, keeping both
// byte-exact. A suffix protocol.CheckPath refuses is refused here too, and the result is
// checked once more: the request line stays in origin form under the target's path.
func targetURL(base *url.URL, suffix, query string) (*url.URL, error) {
	if err := protocol.CheckPath(suffix); err != nil {
		return nil, err
	}
	if strings.ContainsFunc(query, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '#' }) {
		return nil, fmt.Errorf("query has a control character, space or #")
	}
	u := *base
	u.User = nil
	u.Fragment, u.RawFragment = "", ""
	if suffix != "" {
		raw := strings.TrimSuffix(base.EscapedPath(), "/") + suffix
		p, err := url.PathUnescape(raw)
		if err != nil {
			return nil, fmt.Errorf("path suffix %q: %w", suffix, err)
		}
		u.Path, u.RawPath = p, raw
		if u.EscapedPath() != raw {
			// Escaping Go would normalise: send the path exactly as received.
			u.Opaque = raw
		}
	}
	switch {
	case query == "":
	case u.RawQuery == "":
		u.RawQuery = query
	default:
		u.RawQuery += "&" + query
	}
	u.ForceQuery = false
	if p := u.RequestURI(); !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") {
		return nil, fmt.Errorf("path suffix %q: request line %q would not be in origin form", suffix, p)
	}
	return &u, nil
}

// targetHeaders is the sender's headers in order (values of a repeated name kept in order;
// hop-by-hop ones dropped), the route's headers (routeHeaderList) where the sender sent none of
// that name, and hookrelay's own. Names in replace (canonical) are the route's alone: its value
// if it has one, else none. The map is filled directly so no values are merged or reordered;
// single values share one backing array (built per attempt: the client owns the request).
func targetHeaders(rec *persist.Record, n int, route []persist.Header, replace map[string]bool) http.Header {
	size := len(rec.Headers) + len(route) + 4
	h := make(http.Header, size)
	vals := make([]string, 0, size)
	one := func(v string) []string { // capacity 1: a second value of the name reallocates
		vals = append(vals, v)
		return vals[len(vals)-1 : len(vals) : len(vals)]
	}
	var conn []string
	for _, hd := range rec.Headers {
		if http.CanonicalHeaderKey(hd.Name) == "Connection" {
			conn = append(conn, hd.Value)
		}
	}
	hop := hopOnly
	if len(conn) > 0 {
		hop = protocol.HopByHop(conn)
	}
	for _, hd := range rec.Headers {
		k := http.CanonicalHeaderKey(hd.Name)
		if hop(k) || ownHeaders[k] || strings.HasPrefix(k, "Hookrelay-") || replace[k] || !validHeader(k, hd.Value) {
			continue // hookrelay-* are ours, replace the route's: a sender cannot forge them
		}
		if vs, ok := h[k]; ok {
			h[k] = append(vs, hd.Value)
		} else {
			h[k] = one(hd.Value)
		}
	}
	for _, hd := range route {
		if _, sent := h[hd.Name]; !sent {
			h[hd.Name] = one(hd.Value)
		}
	}
	if _, sent := h["User-Agent"]; !sent {
		h["User-Agent"] = one("") // no Go default User-Agent
	}
	wid := webhookID(rec.ID)
	h[headerID] = one(wid)
	h[headerAttempt] = one(strconv.Itoa(n))
	if rec.Replay {
		h[headerReplay] = one("1")
	} else {
		delete(h, headerReplay)
	}
	if _, sent := h[headerWebhook]; !sent {
		h[headerWebhook] = one(wid)
	}
	return h
}

// hopOnly is protocol.HopByHop of a message without a Connection header.
var hopOnly = protocol.HopByHop(nil)

// routeHeaderList is a route's headers as targetHeaders adds them: canonical names, sorted,
// without those the route may not set (hop-by-hop, Host, Content-Length, Expect). Built once
// per route.
func routeHeaderList(r *Route) []persist.Header {
	names := slices.Sorted(maps.Keys(r.Headers))
	var out []persist.Header
	for _, name := range names {
		k := http.CanonicalHeaderKey(name)
		if hopOnly(k) || ownHeaders[k] || slices.ContainsFunc(out, func(h persist.Header) bool { return h.Name == k }) {
			continue
		}
		out = append(out, persist.Header{Name: k, Value: r.Headers[name]})
	}
	return out
}

// validHeader refuses what no HTTP/1.1 request can carry: a name that is not a token, a
// value with CR, LF or NUL.
func validHeader(name, value string) bool {
	if name == "" || strings.ContainsAny(value, "\r\n\x00") {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return true
}

// result is one attempt's outcome, classified: kind is "ok", "status", "timeout", "connect" or
// "request".
type result struct {
	kind       string
	retryable  bool
	status     int
	retryAfter time.Duration
	err        error
}

func (r result) ok() bool { return r.kind == "ok" }

// reason is the dead-letter reason of a non-retryable result.
func (r result) reason() string {
	if r.status != 0 {
		return fmt.Sprintf("status %d", r.status)
	}
	return r.err.Error()
}

// classify sorts an attempt: 2xx delivered; 5xx, 408, 409, 425, 429 and transport errors
// retried; 3xx (redirects are not followed) and other 4xx dead at once.
func classify(resp *http.Response, err error, now time.Time) result {
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL: its query may hold secrets
		}
		var ne net.Error
		if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
			return result{kind: "timeout", retryable: true, err: err}
		}
		return result{kind: "connect", retryable: true, err: err}
	}
	s := resp.StatusCode
	res := result{kind: "status", status: s}
	switch {
	case s >= 200 && s < 300:
		res.kind = "ok"
		return res
	case s >= 500, s == 408, s == 409, s == 425, s == 429:
		res.retryable = true
		res.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), now)
	}
	res.err = fmt.Errorf("status %d", s)
	return res
}

// parseRetryAfter reads Retry-After as seconds or an HTTP date; 0 when absent or invalid.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(min(secs, 1<<31)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

// newTargetClient is a route's HTTP client: its timeout, no redirects, no proxy (targets are
// local; only the tunnel honours HTTPS_PROXY), no transparent gzip, idle connections for every
// worker, and the route's private CA added to the system roots.
func newTargetClient(r *Route) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.DisableCompression = true
	tr.MaxIdleConns = 2 * r.Concurrency
	tr.MaxIdleConnsPerHost = r.Concurrency
	if r.CAFile != "" {
		pem, err := os.ReadFile(r.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read ca_file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s: no PEM certificates", r.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{
		Transport:     tr,
		Timeout:       r.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}
