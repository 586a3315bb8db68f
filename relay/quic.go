package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/hookrelay/hookrelay/protocol"
)

// QUIC liveness on the relay's side. The agent asks for shorter (its idle timeout wins, being
// the lower); these bound how long a killed agent's session holds its webhooks.
const (
	quicKeepAlive   = 3 * time.Second
	quicIdleTimeout = 9 * time.Second
)

// listenQUIC listens on cfg.QUICAddr with the relay certificate: the configured one (as
// Reload swaps it), or else the self-signed one kept in data_dir. It logs the fingerprint
// agents pin and fills /v1/info. It returns nil, nil when quic_addr is not set.
func (s *Server) listenQUIC() (*protocol.QUICListener, error) {
	if s.cfg.QUICAddr == "" {
		return nil, nil
	}
	tlsConf := &tls.Config{GetCertificate: s.GetCertificate}
	selfSigned := s.cfg.TLS == nil || s.cfg.TLS.Cert == ""
	fp := ""
	if selfSigned {
		cert, err := Certificate(s.cfg)
		if err != nil {
			return nil, fmt.Errorf("quic: %w", err)
		}
		tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}}
		fp = protocol.Fingerprint(cert.Certificate[0])
	}
	ln, err := protocol.ListenQUIC(s.cfg.QUICAddr, tlsConf, protocol.QUICConfig{
		MaxFrame:    protocol.DefaultMaxFrame,
		KeepAlive:   quicKeepAlive,
		IdleTimeout: quicIdleTimeout,
		Logger:      s.log.With("component", "quic"),
		Admit:       s.admitQUIC,
	})
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.quicAddr = advertisedQUICAddr(ln.Addr(), s.cfg.Addr)
	if fp != "" {
		s.fingerprint = fp
	}
	fp = s.fingerprint // with tls configured: set by New, and by Reload when the cert changes
	s.mu.Unlock()
	s.log.Info("quic listening", "addr", ln.Addr().String(), "fingerprint", fp, "self_signed", selfSigned)
	return ln, nil
}

// advertisedQUICAddr is the quic_addr /v1/info reports: ":port" (the host the agent used to
// reach addr) when QUIC listens on every address or on the same one as addr, since the
// agent may know the relay by a name or a NAT's address that the relay cannot see; the bound
// host otherwise.
func advertisedQUICAddr(bound net.Addr, httpAddr string) string {
	ua, ok := bound.(*net.UDPAddr)
	if !ok {
		return ""
	}
	port := strconv.Itoa(ua.Port)
	httpHost, _, _ := net.SplitHostPort(httpAddr)
	httpIP := net.ParseIP(httpHost)
	if ua.IP == nil || ua.IP.IsUnspecified() || (httpIP != nil && httpIP.Equal(ua.IP)) {
		return ":" + port
	}
	return net.JoinHostPort(ua.IP.String(), port)
}

// serveQUIC accepts QUIC tunnels and runs an agent session on each until the listener is
// closed, which happens when ctx ends (Run cancels it when it shuts down). Sessions are ended
// by the hub's shutdown, like WebSocket ones; serveQUIC returns after all of them.
func (s *Server) serveQUIC(ctx context.Context, ln *protocol.QUICListener) {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	defer ln.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		t, err := ln.Accept(context.Background())
		if err != nil {
			if !errors.Is(err, protocol.ErrClosed) {
				s.log.Error("quic accept stopped", "err", err)
			}
			return
		}
		// Not ctx: at shutdown the hub says GoAway to the session first.
		wg.Go(func() { s.ServeTunnel(context.Background(), t) })
	}
}

// admitQUIC takes a pending-tunnel slot for a new QUIC connection (its UDP source is the
// client: no proxy stands in front of QUIC); the tunnel gives it back once its Hello is read.
func (s *Server) admitQUIC(remote net.Addr) (func(), error) {
	var client netip.Addr
	if ua, ok := remote.(*net.UDPAddr); ok {
		client = ua.AddrPort().Addr().Unmap()
	}
	slot, no := s.hub.preauth.enter(client, s.live.Load().cfg)
	if no != nil {
		s.log.Info("tunnel refused", "transport", "quic", "remote", remote.String(), "reason", no.reason)
		return nil, &protocol.Refusal{Code: protocol.CodeLimit, Reason: no.msg}
	}
	return slot.leave, nil
}
