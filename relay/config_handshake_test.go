package relay

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hookrelay/hookrelay/internal/testutil"
)

// The handshake block and the new verify schemes, as written in relay.yaml, with their
// secrets from files and the environment, and a relative ca_file.
func TestConfigHandshakeYAML(t *testing.T) {
	dir := t.TempDir()
	testutil.WriteCert(t, dir)
	testutil.NewCA(t, "senders").WritePEM(t, dir, "senders-ca.pem")
	os.WriteFile(filepath.Join(dir, "zoom.secret"), []byte("zoom-secret-token\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "x.secret"), []byte("x-consumer-secret\n"), 0o600)
	t.Setenv("HR_TEST_META", "meatyhamhock")
	t.Setenv("HR_TEST_SLACK", "slack-signing")
	cfgPath := filepath.Join(dir, "relay.yaml")
	os.WriteFile(cfgPath, []byte(`
data_dir: `+dir+`
tls: {cert: relay.crt, key: relay.key}
endpoints:
  - name: providers
    tokens: ["`+hashA+`"]
    handshake:
      slack: {}
      meta: {verify_token_env: HR_TEST_META}
      graph: {}
      zoom: {secret_file: zoom.secret}
      twitter: {consumer_secret_file: x.secret}
      dropbox: {}
    verify:
      slack: {secret_env: HR_TEST_SLACK, tolerance: 60s}
      zoom: {secret_file: zoom.secret}
      mtls: {ca_file: senders-ca.pem, subjects: [billing.sender.example]}
`), 0o600)
	c, err := LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	e := c.Endpoints[0]
	h, v := e.Handshake, e.Verify
	if h.Slack == nil || h.Graph == nil || h.Dropbox == nil || h.Meta.VerifyToken != "meatyhamhock" ||
		h.Zoom.Secret != "zoom-secret-token" || h.Twitter.ConsumerSecret != "x-consumer-secret" {
		t.Fatalf("handshake block read as %+v", h)
	}
	if v.Slack.Secret != "slack-signing" || v.Slack.Tolerance.Seconds() != 60 || v.Zoom.Secret != "zoom-secret-token" ||
		v.MTLS.CAFile != filepath.Join(dir, "senders-ca.pem") || v.MTLS.Subjects[0] != "billing.sender.example" {
		t.Fatalf("verify block read as slack %+v zoom %+v mtls %+v", v.Slack, v.Zoom, v.MTLS)
	}
}

func TestConfigHandshakeErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"handshake: {zoom: {secret: s}}\n", "endpoints[0].handshake.zoom: requires verify.zoom on this endpoint"},
		{"handshake: {zoom: {}}\n    verify: {zoom: {secret: s}}\n", "endpoints[0].handshake.zoom.secret: required"},
		{"handshake: {meta: {}}\n", "endpoints[0].handshake.meta.verify_token: required"},
		{"handshake: {twitter: {}}\n", "endpoints[0].handshake.twitter.consumer_secret: required"},
		{"handshake: {slack: {secret: s}}\n", "field secret not found"},
		{"handshake: {github: {}}\n", "field github not found"},
		{"handshake: {meta: {verify_token_env: HR_TEST_UNSET}}\n", "endpoints[0].handshake.meta.verify_token_env: environment variable HR_TEST_UNSET is not set"},
		{"verify: {mtls: {ca_file: /nonexistent/ca.pem}}\n", "endpoints[0].verify.mtls: needs tls"},
		{"verify: {mtls: {ca_file: /nonexistent/ca.pem}}\n", "endpoints[0].verify.mtls.ca_file: open /nonexistent/ca.pem"},
		{"verify: {slack: {tolerance: 10s}}\n", "endpoints[0].verify.slack: no secret"},
	} {
		_, err := parseConfig([]byte("data_dir: /tmp/x\nendpoints:\n  - name: a\n    " + tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error with %q", tc.yaml, err, tc.want)
		}
	}
}
