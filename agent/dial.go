package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hookrelay/hookrelay/protocol"
)

// QUIC settings of the agent. A killed relay is noticed within quicIdleTimeout (the lower of
// both sides' idle timeouts applies, and the relay's is longer).
const (
	quicKeepAlive   = 2 * time.Second
	quicIdleTimeout = 6 * time.Second
	// quicHandshake bounds a quic:// dial; autoQUICHandshake the QUIC try of auto mode before
	// it falls back to WebSocket (UDP may be silently dropped).
	quicHandshake     = 10 * time.Second
	autoQUICHandshake = 3 * time.Second
	infoTimeout       = 5 * time.Second
	maxInfoBody       = 64 << 10
)

// Transport modes, from the relay URL's scheme.
const (
	modeWebSocket = iota // ws://, wss://
	modeQUIC             // quic://host:port: QUIC only
	modeAuto             // http://, https://: QUIC when verifiable and reachable, else WebSocket
)

// dialer chooses the transport for the relay URL and dials it; the connection loop keeps one
// for the agent's life.
type dialer struct {
	a     *Agent
	mode  int
	base  *url.URL     // the relay URL: ws(s):// or http(s):// (path kept), or quic://host:port
	shown string       // the relay URL as logged and shown
	ws    *url.URL     // WebSocket URL (ws/wss) in modes WebSocket and auto
	httpc *http.Client // auto mode: GET /v1/info, through HTTPS_PROXY like the tunnel

	// Owned by the connection loop: after a QUIC handshake timed out, reconnects go straight
	// to WebSocket until quicSkipUntil (the retries while on WebSocket keep trying).
	quicSkipUntil  time.Time
	quicSkipReason string
}

func (a *Agent) newDialer(relay string) (*dialer, error) {
	u, err := url.Parse(relay)
	if err != nil {
		return nil, fmt.Errorf("parse relay url: %w", err)
	}
	d := &dialer{a: a, base: u, shown: displayURL(relay)}
	ws := *u
	switch u.Scheme {
	case "ws", "wss":
		d.mode = modeWebSocket
	case "http", "https":
		d.mode = modeAuto
		ws.Scheme = map[string]string{"http": "ws", "https": "wss"}[u.Scheme]
		tr := &http.Transport{Proxy: http.ProxyFromEnvironment, DisableKeepAlives: true,
			TLSHandshakeTimeout: infoTimeout}
		if u.Scheme == "https" && a.cfg.pinned() {
			tc, err := a.cfg.pinnedTLS(u.Hostname())
			if err != nil {
				return nil, err
			}
			tr.TLSClientConfig = tc
		}
		d.httpc = &http.Client{Transport: tr, Timeout: infoTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	case "quic":
		d.mode = modeQUIC
		if u.Port() == "" {
			return nil, fmt.Errorf("relay %s: quic:// needs host:port (the relay's quic_addr)", d.shown)
		}
		return d, nil
	default:
		return nil, fmt.Errorf("relay scheme %q not supported", u.Scheme)
	}
	d.ws = &ws
	return d, nil
}

// dial returns a tunnel to the relay. In auto mode it tries QUIC first, falls back to
// WebSocket, and logs which transport it took and why.
func (d *dialer) dial(ctx context.Context) (protocol.Tunnel, error) {
	switch d.mode {
	case modeQUIC:
		return d.dialQUIC(ctx)
	case modeAuto:
		var tun protocol.Tunnel
		reason := d.quicSkipReason + " (on a previous try; next QUIC try while on websocket)"
		if time.Now().After(d.quicSkipUntil) {
			var timedOut bool
			tun, reason, timedOut = d.tryQUIC(ctx, "")
			if tun != nil {
				d.a.log.Info("tunnel transport", "transport", "quic", "reason", reason)
				return tun, nil
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if timedOut {
				d.quicSkipUntil, d.quicSkipReason = time.Now().Add(d.a.cfg.QUICRetry), reason
			}
		}
		tun, err := d.a.dialWebSocket(ctx, d.ws)
		if err != nil {
			return nil, fmt.Errorf("%w (quic not used: %s)", err, reason)
		}
		d.a.log.Info("tunnel transport", "transport", "websocket", "reason", reason)
		return tun, nil
	}
	return d.a.dialWebSocket(ctx, d.ws)
}

// dialQUIC dials a quic:// relay: the certificate must match relay_fingerprint, or else be
// CA-valid for the host.
func (d *dialer) dialQUIC(ctx context.Context) (protocol.Tunnel, error) {
	tc, err := d.quicTLS(d.base.Hostname())
	if err != nil {
		return nil, err
	}
	tun, err := dialQUICTunnel(ctx, d.base.Host, tc, quicHandshake)
	switch {
	case err == nil:
		return tun, nil
	case !d.a.cfg.pinned() && isCertError(err):
		return nil, fmt.Errorf("%w (%v)", ErrQUICNotVerifiable, err)
	case errors.Is(err, protocol.ErrFingerprintMismatch):
		return nil, fmt.Errorf("the relay's QUIC certificate does not match relay_fingerprint "+
			"(hookrelay fingerprint on the relay prints the right one): %w", err)
	}
	return nil, err
}

// tryQUIC is auto mode's QUIC attempt: ask /v1/info for the QUIC address, and dial it only
// when its certificate can be verified (relay_fingerprint pinned, or CA-valid; the fingerprint
// /v1/info reports is never trusted). It returns the tunnel and why QUIC was used, or nil
// and why not, and whether the QUIC handshake timed out (UDP may be dropped). notBefore, when
// set, is the reason of the previous try, to log a change once.
func (d *dialer) tryQUIC(ctx context.Context, notBefore string) (tun protocol.Tunnel, reason string, timedOut bool) {
	info, err := d.relayInfo(ctx)
	if err != nil {
		return nil, "relay info: " + err.Error(), false
	}
	if info.QUICAddr == "" {
		return nil, "relay has no quic_addr", false
	}
	host, port, err := net.SplitHostPort(info.QUICAddr)
	if err != nil {
		return nil, fmt.Sprintf("relay info: quic_addr %q is not host:port", info.QUICAddr), false
	}
	if host == "" {
		host = d.base.Hostname()
	}
	addr := net.JoinHostPort(host, port)
	tc, err := d.quicTLS(host)
	if err != nil {
		return nil, err.Error(), false
	}
	tun, err = dialQUICTunnel(ctx, addr, tc, autoQUICHandshake)
	var ne net.Error
	switch {
	case err == nil:
		if d.a.cfg.pinned() {
			return tun, "quic certificate matches relay_fingerprint", false
		}
		return tun, "quic certificate is CA-valid", false
	case errors.Is(err, protocol.ErrFingerprintMismatch):
		r := "quic certificate does not match relay_fingerprint: " + err.Error()
		if r != notBefore {
			d.a.log.Warn("the relay's QUIC certificate does not match relay_fingerprint: "+
				"staying on websocket (hookrelay fingerprint on the relay prints the right one)",
				"quic_addr", addr, "err", err)
		}
		return nil, r, false
	case !d.a.cfg.pinned() && isCertError(err):
		return nil, "quic certificate cannot be verified: no relay_fingerprint and not CA-valid", false
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return nil, fmt.Sprintf("quic handshake with %s failed: timeout after %v (UDP blocked?)", addr, autoQUICHandshake), true
	}
	return nil, "quic handshake failed: " + err.Error(), false
}

// relayInfo is what GET /v1/info answers.
type relayInfo struct {
	Version     string `json:"version"`
	QUICAddr    string `json:"quic_addr"`
	Fingerprint string `json:"fingerprint"`
}

func (d *dialer) relayInfo(ctx context.Context) (*relayInfo, error) {
	u := *d.base
	u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/info"
	u.RawPath, u.RawQuery, u.Fragment = "", "", ""
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := d.httpc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /v1/info: %s", resp.Status)
	}
	var info relayInfo
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxInfoBody)).Decode(&info); err != nil {
		return nil, fmt.Errorf("GET /v1/info: %w", err)
	}
	return &info, nil
}

// quicTLS trusts exactly relay_fingerprint when set, else the system roots for host.
func (d *dialer) quicTLS(host string) (*tls.Config, error) {
	if d.a.cfg.pinned() {
		return d.a.cfg.pinnedTLS(host)
	}
	return &tls.Config{ServerName: host}, nil
}

// dialQUICTunnel dials a QUIC tunnel with the agent's keepalive and idle timeout.
func dialQUICTunnel(ctx context.Context, addr string, tc *tls.Config, handshake time.Duration) (protocol.Tunnel, error) {
	tun, err := protocol.DialQUIC(ctx, addr, tc, protocol.QUICConfig{
		MaxFrame:         protocol.DefaultMaxFrame,
		KeepAlive:        quicKeepAlive,
		IdleTimeout:      quicIdleTimeout,
		HandshakeTimeout: handshake,
	})
	if err != nil {
		return nil, err
	}
	return tun, nil // the dialer side holds webhooks back until the Welcome (protocol)
}

// isCertError reports whether err is a failed verification of the peer's certificate chain.
func isCertError(err error) bool {
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		verify   *tls.CertificateVerificationError
	)
	return errors.As(err, &unknown) || errors.As(err, &hostname) || errors.As(err, &invalid) ||
		errors.As(err, &verify)
}

// watchUpgrade, for a WebSocket tunnel in auto mode, tries QUIC again every quic_retry while
// the session runs. When QUIC works it ends the session (the relay releases what the agent
// has not acked, and redelivers it on QUIC; what the agent already stored is acked again, not
// delivered twice). Run the session under the returned context; then call the returned
// function: it stops the retries and returns the QUIC tunnel found, or nil.
func (d *dialer) watchUpgrade(ctx context.Context, tun protocol.Tunnel) (context.Context, func() protocol.Tunnel) {
	if d.mode != modeAuto || tun.Transport() != "websocket" {
		return ctx, func() protocol.Tunnel { return nil }
	}
	sctx, cancel := context.WithCancel(ctx)
	found := make(chan protocol.Tunnel, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if t := d.retryQUIC(sctx); t != nil {
			found <- t
			cancel()
		}
	}()
	return sctx, func() protocol.Tunnel {
		cancel()
		<-done
		select {
		case t := <-found:
			d.quicSkipUntil = time.Time{}
			return t
		default:
			return nil
		}
	}
}

// retryQUIC tries QUIC every quic_retry (±10%) until it works or ctx ends.
func (d *dialer) retryQUIC(ctx context.Context) protocol.Tunnel {
	last := ""
	for {
		every := d.a.cfg.QUICRetry
		wait := every - every/10 + rand.N(every/5+1)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		tun, reason, _ := d.tryQUIC(ctx, last)
		if tun != nil {
			d.a.log.Info("quic works now: leaving websocket", "reason", reason)
			return tun
		}
		if ctx.Err() != nil {
			return nil
		}
		if reason != last {
			d.a.log.Info("staying on websocket", "reason", reason, "next_try_in", every)
		}
		last = reason
	}
}

// dialWebSocket dials the relay's /v1/tunnel over WebSocket. HTTPS_PROXY/NO_PROXY are honoured
// by the protocol package's default proxy function.
func (a *Agent) dialWebSocket(ctx context.Context, u *url.URL) (protocol.Tunnel, error) {
	t := *u
	t.Path = strings.TrimSuffix(t.Path, "/") + "/v1/tunnel"
	t.RawPath = ""
	t.RawQuery = ""
	t.Fragment = ""
	cfg := protocol.WSDialConfig{}
	if t.Scheme == "wss" && a.cfg.pinned() {
		tc, err := a.cfg.pinnedTLS(t.Hostname())
		if err != nil {
			return nil, err
		}
		cfg.TLS = tc
	}
	tun, err := protocol.DialWebSocket(ctx, t.String(), cfg)
	if err != nil {
		return nil, fmt.Errorf("dial websocket: %w", err)
	}
	return tun, nil
}
