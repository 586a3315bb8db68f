package protocol

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"fmt"
)

const fingerprintPrefix = "sha256:"

// Fingerprint returns "sha256:" + lowercase hex of the SHA-256 of a certificate's DER bytes,
// the form `hookrelay fingerprint` prints and relay_fingerprint holds.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return fingerprintPrefix + hex.EncodeToString(sum[:])
}

// ParseFingerprint checks a "sha256:<64 hex>" fingerprint (hex in either case) and returns
// the digest.
func ParseFingerprint(fp string) ([]byte, error) {
	sum, err := ParseSHA256(fp)
	if err != nil {
		return nil, fmt.Errorf("fingerprint %q: %w", fp, err)
	}
	return sum[:], nil
}

// PinnedTLSConfig returns a client TLS config that trusts exactly the server certificate with
// the given fingerprint, instead of a CA chain: for self-signed relays. The leaf certificate's
// SHA-256 is compared in constant time; its names and dates are not checked. serverName is
// sent as SNI (may be empty). The caller may set NextProtos on the result.
func PinnedTLSConfig(fingerprint, serverName string) (*tls.Config, error) {
	return PinnedTLSConfigAny([]string{fingerprint}, serverName)
}

// PinnedTLSConfigAny is PinnedTLSConfig trusting any of several certificates: the relays of
// a cluster, or a certificate and its successor during a rotation.
func PinnedTLSConfigAny(fingerprints []string, serverName string) (*tls.Config, error) {
	if len(fingerprints) == 0 {
		return nil, fmt.Errorf("pinned tls config: no fingerprint")
	}
	want := make([][]byte, len(fingerprints))
	for i, fp := range fingerprints {
		sum, err := ParseFingerprint(fp)
		if err != nil {
			return nil, fmt.Errorf("pinned tls config: %w", err)
		}
		want[i] = sum
	}
	return &tls.Config{
		ServerName:         serverName,
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // replaced by the fingerprint check below
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return fmt.Errorf("%w: peer sent no certificate", ErrFingerprintMismatch)
			}
			got := sha256.Sum256(cs.PeerCertificates[0].Raw)
			for _, w := range want {
				if subtle.ConstantTimeCompare(got[:], w) == 1 {
					return nil
				}
			}
			pinned := fingerprintPrefix + hex.EncodeToString(want[0])
			if len(want) > 1 {
				pinned = fmt.Sprintf("%d fingerprints", len(want))
			}
			return fmt.Errorf("%w: peer certificate is %s, pinned %s", ErrFingerprintMismatch,
				fingerprintPrefix+hex.EncodeToString(got[:]), pinned)
		},
	}, nil
}
