package verify

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/testutil"
)

func TestMTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testutil.NewCA(t, "senders CA")
	caFile := ca.WritePEM(t, dir, "ca.pem")
	other := testutil.NewCA(t, "another CA")
	now := time.Now()
	good := ca.Issue(t, "sender-1", testutil.ClientOptions{DNSNames: []string{"hooks.sender.example"}})
	cases := []struct {
		name     string
		subjects []string
		cert     *tls.Certificate // nil: no certificate
		status   int
		reason   string
	}{
		{"any subject", nil, &good, 0, ""},
		{"by common name", []string{"nobody", "sender-1"}, &good, 0, ""},
		{"by DN", []string{"CN=sender-1,O=Sender Inc"}, &good, 0, ""},
		{"by DNS name", []string{"hooks.sender.example"}, &good, 0, ""},
		{"no certificate", nil, nil, http.StatusUnauthorized, "missing client certificate"},
		{"another CA", nil, ptr(other.Issue(t, "sender-1", testutil.ClientOptions{})), http.StatusUnauthorized, "invalid client certificate: not issued by the endpoint's CA"},
		{"server usage only", nil, ptr(ca.Issue(t, "sender-1", testutil.ClientOptions{Usage: x509.ExtKeyUsageServerAuth})), http.StatusUnauthorized, "not for client authentication"},
		{"expired", nil, ptr(ca.Issue(t, "sender-1", testutil.ClientOptions{NotBefore: now.Add(-2 * time.Hour), NotAfter: now.Add(-time.Hour)})), http.StatusUnauthorized, "expired"},
		{"subject not allowed", []string{"sender-2", "CN=sender-1"}, &good, http.StatusForbidden, "subject not allowed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := mustNew(t, &Config{MTLS: &MTLSConfig{CAFile: caFile, Subjects: c.subjects}})
			r := request("", nil)
			if c.cert != nil {
				r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{c.cert.Leaf}}
			}
			// Checked with the headers: before the body is read.
			expect(t, v.CheckHeaders(r, now), c.status, SchemeMTLS, c.reason)
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestMTLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	os.WriteFile(notPEM, []byte("hello"), 0o600)
	caFile := testutil.NewCA(t, "ca").WritePEM(t, dir, "ca.pem")
	cases := []struct {
		c    MTLSConfig
		want string
	}{
		{MTLSConfig{}, "verify.mtls.ca_file: required"},
		{MTLSConfig{CAFile: filepath.Join(dir, "absent.pem")}, "verify.mtls.ca_file: open"},
		{MTLSConfig{CAFile: notPEM}, "verify.mtls.ca_file: no PEM certificate"},
		{MTLSConfig{CAFile: caFile, Subjects: []string{"a", ""}}, "verify.mtls.subjects[1]: is empty"},
	}
	for _, c := range cases {
		_, err := New(&Config{MTLS: &c.c})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(mtls %+v) = %v, want an error containing %q", c.c, err, c.want)
		}
	}
	for _, c := range []struct {
		c    Config
		want string
	}{
		{Config{Slack: &Timed{}}, "verify.slack: no secret"},
		{Config{Zoom: &Timed{Secrets: Secrets{Secret: "s"}, Tolerance: -time.Second}}, "verify.zoom.tolerance: -1s is negative"},
	} {
		if _, err := New(&c.c); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v) = %v, want an error containing %q", c.c, err, c.want)
		}
	}
}
