package relay

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"

	"github.com/hookrelay/hookrelay/protocol"
)

// loadCertificate reads the configured PEM certificate (chain) and key, and returns them with
// the leaf's fingerprint ("sha256:…", as /v1/info reports it and agents pin it).
func loadCertificate(c *TLSConfig) (*tls.Certificate, string, error) {
	cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
	if err != nil {
		return nil, "", fmt.Errorf("tls: load %s and %s: %w", c.Cert, c.Key, err)
	}
	if len(cert.Certificate) == 0 {
		return nil, "", errors.New("tls: no certificate in " + c.Cert)
	}
	return &cert, protocol.Fingerprint(cert.Certificate[0]), nil
}

// GetCertificate returns the configured TLS certificate, as reloaded by Reload; nil without
// tls. It fits tls.Config.GetCertificate, so that every listener (HTTP, QUIC) serves the
// current one.
func (s *Server) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c := s.cert.Load()
	if c == nil {
		return nil, errors.New("no tls certificate configured")
	}
	return c, nil
}

// serverTLS is the TLS configuration of the HTTP listeners (https/wss).
func (s *Server) serverTLS() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: s.GetCertificate}
}

// ingressTLS is serverTLS for the listener on addr (ingress and tunnels). While any endpoint
// has verify.mtls it asks every client for a certificate without requiring or verifying one:
// agents' tunnels and other endpoints send none and go on as before, and each mtls endpoint
// verifies what came against its own CA (relay/verify). Decided per connection from the live
// config, so a reload that adds or removes mtls takes effect for new connections; the admin
// listener never asks, so a browser holding client certificates is not prompted there.
func (s *Server) ingressTLS() *tls.Config {
	base := s.serverTLS()
	ask := s.serverTLS()
	ask.ClientAuth = tls.RequestClientCert
	ask.NextProtos = []string{"h2", "http/1.1"} // as http.Server.ServeTLS sets on base
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		if s.live.Load().hasMTLS() {
			return ask, nil
		}
		return nil, nil
	}
	return base
}

// isLoopback reports whether a listen address binds loopback only (127.0.0.0/8, ::1, or
// localhost); ":port" binds every interface and is not.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
