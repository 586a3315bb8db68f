package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// token and admin_token may come from KEY_file (relative to the config's directory) or
// KEY_env; HOOKAGENT_TOKEN still wins over both.
func TestConfigSecretsFromFilesAndEnv(t *testing.T) {
	t.Setenv(TokenEnv, "")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "token"), []byte("file-secret\n"), 0o600)
	t.Setenv("HA_TEST_ADMIN", sha256Hex("adm"))
	path := filepath.Join(dir, "agent.yaml")
	y := strings.Replace(goodConfig, "token: file-token\n", "token_file: token\nadmin_token_env: HA_TEST_ADMIN\n", 1)
	os.WriteFile(path, []byte(y), 0o600)
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Token != "file-secret" || cfg.AdminToken != sha256Hex("adm") {
		t.Fatalf("token %q admin_token %q", cfg.Token, cfg.AdminToken)
	}
	t.Setenv(TokenEnv, "env-wins")
	if cfg, err = LoadConfig(path); err != nil || cfg.Token != "env-wins" {
		t.Fatalf("with %s set: token %q, %v", TokenEnv, cfg.Token, err)
	}
}

func TestConfigSecretRefErrors(t *testing.T) {
	t.Setenv(TokenEnv, "")
	for _, tc := range []struct{ old, new, want string }{
		{"token: file-token\n", "token: a\ntoken_file: b\n", "config token: set only one of token and token_file"},
		{"token: file-token\n", "token_file: /nonexistent/tok\n", "config token_file: read secret file: open /nonexistent/tok"},
		{"token: file-token\n", "token_env: HA_TEST_UNSET\n", "config token_env: environment variable HA_TEST_UNSET is not set"},
		{"token: file-token\n", "token: x\nadmin_token_env: HA_TEST_UNSET\n", "admin_token_env: environment variable HA_TEST_UNSET"},
	} {
		_, err := ParseConfig([]byte(strings.Replace(goodConfig, tc.old, tc.new, 1)))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error with %q", tc.new, err, tc.want)
		}
	}
}
