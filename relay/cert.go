package relay

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/hookrelay/hookrelay/protocol"
)

// Files of the self-signed certificate kept in data_dir when tls is not configured.
const (
	selfSignedCert = "quic-cert.pem"
	selfSignedKey  = "quic-key.pem"
	// selfSignedValidity is long on purpose: agents pin the fingerprint, not the dates, and a
	// certificate that expired would change the fingerprint every agent pinned.
	selfSignedValidity = 50 * 365 * 24 * time.Hour
)

// Certificate returns the relay's tunnel certificate: the configured tls cert and key, or else
// the self-signed one kept in data_dir, created (with its key, 0600) the first time.
func Certificate(cfg *Config) (tls.Certificate, error) {
	if cfg.TLS != nil && cfg.TLS.Cert != "" {
		c, err := tls.LoadX509KeyPair(cfg.TLS.Cert, cfg.TLS.Key)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("load tls cert: %w", err)
		}
		return c, nil
	}
	return selfSigned(cfg)
}

// Fingerprint returns "sha256:" + hex of the SHA-256 of the relay certificate's DER (the
// configured one, or the self-signed one, created if none exists yet): what agents pin as
// relay_fingerprint. With tls configured only the certificate file is read.
func Fingerprint(cfg *Config) (string, error) {
	if cfg.TLS != nil && cfg.TLS.Cert != "" {
		b, err := os.ReadFile(cfg.TLS.Cert)
		if err != nil {
			return "", fmt.Errorf("read tls cert: %w", err)
		}
		for {
			var blk *pem.Block
			blk, b = pem.Decode(b)
			if blk == nil {
				return "", fmt.Errorf("tls cert %s: no PEM CERTIFICATE block", cfg.TLS.Cert)
			}
			if blk.Type == "CERTIFICATE" {
				return protocol.Fingerprint(blk.Bytes), nil
			}
		}
	}
	c, err := selfSigned(cfg)
	if err != nil {
		return "", err
	}
	return protocol.Fingerprint(c.Certificate[0]), nil
}

// selfSigned loads data_dir's self-signed certificate, creating it when missing. Processes
// racing to create it (serve and fingerprint) agree: each file is published with a link that
// never replaces an existing one, the key first, and a certificate is only made for the key
// on disk.
func selfSigned(cfg *Config) (tls.Certificate, error) {
	certPath := filepath.Join(cfg.DataDir, selfSignedCert)
	keyPath := filepath.Join(cfg.DataDir, selfSignedKey)
	if c, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil {
		return c, nil
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return tls.Certificate{}, fmt.Errorf("self-signed cert: create data dir: %w", err)
	}
	if _, err := os.Stat(keyPath); errors.Is(err, os.ErrNotExist) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("self-signed cert: generate key: %w", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("self-signed cert: marshal key: %w", err)
		}
		if err := publish(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
			return tls.Certificate{}, fmt.Errorf("self-signed cert: %w", err)
		}
	}
	if _, err := os.Stat(certPath); errors.Is(err, os.ErrNotExist) {
		certPEM, err := newSelfSignedCert(keyPath, cfg)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("self-signed cert: %w", err)
		}
		if err := publish(certPath, certPEM); err != nil {
			return tls.Certificate{}, fmt.Errorf("self-signed cert: %w", err)
		}
	}
	c, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-signed cert in %s (delete %s and %s to make a new one): %w",
			cfg.DataDir, selfSignedCert, selfSignedKey, err)
	}
	return c, nil
}

// newSelfSignedCert makes a PEM certificate for the key in keyPath, named for loopback and the
// hosts of addr and quic_addr.
func newSelfSignedCert(keyPath string, cfg *Config) ([]byte, error) {
	b, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("key %s: no PEM block", keyPath)
	}
	key, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse key %s: %w", keyPath, err)
	}
	signer, ok := key.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key %s is %T, want ECDSA", keyPath, key)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "hookrelay self-signed"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(selfSignedValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	for _, addr := range []string{cfg.QUICAddr, cfg.Addr} {
		host, _, err := net.SplitHostPort(addr)
		if err != nil || host == "" || host == "localhost" {
			continue
		}
		if ip := net.ParseIP(host); ip == nil {
			tmpl.DNSNames = append(tmpl.DNSNames, host)
		} else if !ip.IsUnspecified() && !ip.IsLoopback() {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &signer.PublicKey, signer)
	if err != nil {
		return nil, fmt.Errorf("create certificate: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// publish writes data to path (0600) unless path exists: through a temporary file and a hard
// link, so a reader never sees a partial file and a racing writer never replaces it.
func publish(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
