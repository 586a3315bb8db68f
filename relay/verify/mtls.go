package verify

import (
	"crypto/x509"
	"fmt"
	"net/http"
	neturl "net/url"
	"os"
	"slices"
	"time"
)

// mtls admits only requests whose TLS client certificate chains to its CA pool and is meant
// for client authentication; with subjects, the leaf must also name one of them. The relay's
// TLS server requests client certificates without verifying them (another endpoint, or an
// agent's tunnel, may send none), so the whole check happens here, per endpoint.
type mtls struct {
	roots    *x509.CertPool
	subjects []string
}

func newMTLS(c *MTLSConfig) (*mtls, error) {
	if c.CAFile == "" {
		return nil, fmt.Errorf("verify.mtls.ca_file: required: the PEM file of the CA that issues the senders' client certificates")
	}
	pem, err := os.ReadFile(c.CAFile)
	if err != nil {
		return nil, fmt.Errorf("verify.mtls.ca_file: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("verify.mtls.ca_file: no PEM certificate in %s", c.CAFile)
	}
	for i, s := range c.Subjects {
		if s == "" {
			return nil, fmt.Errorf("verify.mtls.subjects[%d]: is empty: give a subject DN, common name or DNS/email/URI name, or remove the entry", i)
		}
	}
	return &mtls{roots: roots, subjects: c.Subjects}, nil
}

func (m *mtls) check(r *http.Request, _ []byte, now time.Time) *Failure {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return unauthorized(SchemeMTLS, "missing client certificate")
	}
	leaf := r.TLS.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range r.TLS.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         m.roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return unauthorized(SchemeMTLS, "invalid client certificate: "+certProblem(err))
	}
	if len(m.subjects) > 0 && !slices.ContainsFunc(m.subjects, func(s string) bool { return names(leaf, s) }) {
		return &Failure{Status: http.StatusForbidden, Scheme: SchemeMTLS, Reason: "subject not allowed"}
	}
	return nil
}

// names reports whether the certificate names s: its subject DN, common name, or one of its
// DNS, email or URI names.
func names(c *x509.Certificate, s string) bool {
	if s == c.Subject.String() || s == c.Subject.CommonName {
		return true
	}
	if slices.Contains(c.DNSNames, s) || slices.Contains(c.EmailAddresses, s) {
		return true
	}
	return slices.ContainsFunc(c.URIs, func(u *neturl.URL) bool { return u.String() == s })
}

// certProblem names why a chain did not verify, without echoing the certificate's content.
func certProblem(err error) string {
	switch e := err.(type) {
	case x509.UnknownAuthorityError:
		return "not issued by the endpoint's CA"
	case x509.CertificateInvalidError:
		switch e.Reason {
		case x509.Expired:
			return "expired or not yet valid"
		case x509.IncompatibleUsage:
			return "not for client authentication"
		}
	}
	return "does not verify"
}
