package secretref

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

var (
	keys  = []string{"secret", "secrets", "token", "tokens"}
	lists = []string{"secrets", "tokens"}
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatalf("resolved document does not parse: %v\n%s", err, b)
	}
	return m
}

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "s"), []byte("from-file\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "crlf"), []byte("a: b\r\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "two"), []byte("keep\n\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "list"), []byte("sha256:aa\n\n  sha256:bb\r\n"), 0o600)
	doc := `
token_file: s
tokens_env: LIST
nested:
  - github: {secret_env: SEC, tolerance: 3s}
  - hmac: {secret_file: ` + filepath.Join(dir, "crlf") + `}
  - x: {secret_file: two}
  - y: {secrets_file: list}
ca_file: not-a-secret
`
	out, err := Resolve([]byte(doc), keys, lists, dir, env(map[string]string{"SEC": "yes", "LIST": "sha256:cc\nsha256:dd"}))
	if err != nil {
		t.Fatal(err)
	}
	m := decode(t, out)
	if m["token"] != "from-file" || m["ca_file"] != "not-a-secret" {
		t.Errorf("top level: %v", m)
	}
	if got := m["tokens"].([]any); len(got) != 2 || got[0] != "sha256:cc" || got[1] != "sha256:dd" {
		t.Errorf("tokens from env: %v", got)
	}
	n := m["nested"].([]any)
	gh := n[0].(map[string]any)["github"].(map[string]any)
	if gh["secret"] != "yes" || gh["tolerance"] != "3s" { // "yes" stays a string
		t.Errorf("github: %v", gh)
	}
	if got := n[1].(map[string]any)["hmac"].(map[string]any)["secret"]; got != "a: b" {
		t.Errorf("CRLF file: %q", got)
	}
	if got := n[2].(map[string]any)["x"].(map[string]any)["secret"]; got != "keep\n" {
		t.Errorf("only one trailing newline is trimmed: %q", got)
	}
	if got := n[3].(map[string]any)["y"].(map[string]any)["secrets"].([]any); len(got) != 2 || got[1] != "sha256:bb" {
		t.Errorf("list file: %v", got)
	}

	plain := []byte("# comment\n\ntoken: x\nca_file: y\n")
	if out, err := Resolve(plain, keys, lists, "", nil); err != nil || string(out) != string(plain) {
		t.Errorf("a document without _file/_env keys changed: %q %v", out, err)
	}
}

func TestResolveErrors(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "empty"), nil, 0o600)
	os.WriteFile(filepath.Join(dir, "bin"), []byte{0xff, 0xfe}, 0o600)
	for _, tc := range []struct{ doc, want string }{
		{"token: a\ntoken_file: s\n", "config token: set only one of token and token_file"},
		{"x:\n  - {secret_env: A, secret: b}\n", "config x[0].secret: set only one of secret_env and secret"},
		{"secret_file: a\nsecret_env: A\n", "set only one of secret_file and secret_env"},
		{"e:\n  secret_file: missing.txt\n", "config e.secret_file: read secret file"},
		{"secret_file: missing.txt\n", "missing.txt"},
		{"secret_env: NOPE\n", "config secret_env: environment variable NOPE is not set"},
		{"secret_env: EMPTY\n", "EMPTY is not set (or empty)"},
		{"secret_file: empty\n", "is empty"},
		{"secret_file: bin\n", "not UTF-8"},
		{"secret_file: [a]\n", "config secret_file: want a file path"},
	} {
		_, err := Resolve([]byte(tc.doc), keys, lists, dir, env(map[string]string{"A": "a", "EMPTY": ""}))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error with %q", tc.doc, err, tc.want)
		}
	}
}

// FuzzResolve: any document either fails with a config error or comes back as YAML in which
// no secret key is spelled with _file or _env.
func FuzzResolve(f *testing.F) {
	dir := f.TempDir()
	os.WriteFile(filepath.Join(dir, "s"), []byte("a\"b\\c\x01\n"), 0o600)
	f.Add("token_file: s\n")
	f.Add("a: [{secret_env: E}, {secrets_file: s}]\n")
	f.Add("token: x\n---\ntoken_file: s\n")
	f.Add("{secret_env: E, tokens_env: E, b: &x {c: 1}, d: *x}")
	f.Fuzz(func(t *testing.T, doc string) {
		out, err := Resolve([]byte(doc), keys, lists, dir, env(map[string]string{"E": "x\ny: 'z"}))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "config ") {
				t.Fatalf("error %q does not name the config key", err)
			}
			return
		}
		if string(out) == doc {
			return
		}
		var n yaml.Node
		if err := yaml.Unmarshal(out, &n); err != nil {
			t.Fatalf("resolved document does not parse: %v\n%s", err, out)
		}
		var check func(*yaml.Node)
		check = func(n *yaml.Node) {
			if n.Kind == yaml.MappingNode {
				for i := 0; i < len(n.Content); i += 2 {
					for _, k := range keys {
						if v := n.Content[i].Value; v == k+"_file" || v == k+"_env" {
							t.Fatalf("%s left in\n%s", v, out)
						}
					}
				}
			}
			for _, c := range n.Content {
				check(c)
			}
		}
		check(&n)
	})
}
