package relay

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every secret of relay.yaml may come from KEY_file (relative to the config's directory) or
// KEY_env, inside verify blocks too.
func TestConfigSecretsFromFilesAndEnv(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) { os.WriteFile(filepath.Join(dir, name), []byte(s), 0o600) }
	write("admin", hashA+"\n")
	write("tokens", hashA+"\n"+hashOf("b")+"\n")
	write("gh", "gh-secret\n")
	t.Setenv("HR_TEST_STRIPE", "whsec_env")
	t.Setenv("HR_TEST_PW", hashOf("pw"))
	t.Setenv("HR_TEST_HMAC", "h1\nh2")
	cfgPath := filepath.Join(dir, "relay.yaml")
	os.WriteFile(cfgPath, []byte(`
data_dir: `+dir+`
admin_token_file: admin
endpoints:
  - name: github
    tokens_file: tokens
    verify:
      github: {secret_file: gh}
      stripe: {secret_env: HR_TEST_STRIPE}
      hmac: {header: X-Sig, secrets_env: HR_TEST_HMAC}
      basic: {user: u, password_hash_env: HR_TEST_PW}
`), 0o600)
	c, err := LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	e := c.Endpoints[0]
	v := e.Verify
	if c.AdminToken != hashA || len(e.Tokens) != 2 || e.Tokens[1] != hashOf("b") ||
		v.GitHub.Secret != "gh-secret" || v.Stripe.Secret != "whsec_env" ||
		strings.Join(v.HMAC.Secrets.Secrets, ",") != "h1,h2" || v.Basic.PasswordHash != hashOf("pw") {
		t.Fatalf("secrets not read: admin %q tokens %q verify %+v %+v %+v %+v", c.AdminToken, e.Tokens, v.GitHub, v.Stripe, v.HMAC, v.Basic)
	}
}

func TestConfigSecretRefErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"admin_token: \"" + hashA + "\"\nadmin_token_env: HR_TEST_ADMIN\n", "config: config admin_token: set only one of admin_token and admin_token_env"},
		{"endpoints:\n  - name: a\n    tokens_file: /nonexistent/tokens\n", "endpoints[0].tokens_file: read secret file: open /nonexistent/tokens"},
		{"endpoints:\n  - name: a\n    verify: {github: {secret_env: HR_TEST_UNSET}}\n", "endpoints[0].verify.github.secret_env: environment variable HR_TEST_UNSET is not set"},
		{"endpoints:\n  - name: a\n    verify: {github: {secret: a, secret_file: b}}\n", "endpoints[0].verify.github.secret: set only one of secret and secret_file"},
		{"tls: {cert: a, key_file: b}\n", "key_file"}, // not a secret key: an unknown key, as before
	} {
		_, err := parseConfig([]byte("data_dir: /tmp/x\n" + tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error with %q", tc.yaml, err, tc.want)
		}
	}
}
