// Package secretref lets every secret a config holds come from a file or an environment
// variable instead of the config itself: beside `KEY: value`, a config may say `KEY_file: PATH`
// or `KEY_env: NAME`. It works on the YAML document before the config is decoded, so the
// relay's and the agent's configs (and every nested block, such as verify schemes) share one
// rule, and their structs and strict decoding stay as they are.
package secretref

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Resolve rewrites every `KEY_file: PATH` and `KEY_env: NAME` of the YAML document data whose
// KEY is one of keys (at any depth) into `KEY: <the secret>`, and returns the document to
// decode. A file's content loses one trailing newline; a list-valued key (one whose value is
// a YAML sequence elsewhere, listed in lists) takes one value per non-empty line. A relative
// PATH is relative to dir ("" = the working directory). lookupEnv nil means os.LookupEnv.
//
// Errors name the key's path (endpoints[0].verify.github.secret_file): KEY set together with
// KEY_file or KEY_env, a file that cannot be read, a variable unset or empty, a secret that is
// not UTF-8 text. A document without any such key is returned unchanged (so decode errors
// keep their line numbers); one with them is re-encoded, which drops blank lines.
func Resolve(data []byte, keys, lists []string, dir string, lookupEnv func(string) (string, bool)) ([]byte, error) {
	if lookupEnv == nil {
		lookupEnv = os.LookupEnv
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		return data, nil // empty or broken: the config's own decoder reports it
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		return data, nil // several documents (or a broken second one): the decoder refuses them
	}
	r := resolver{keys: set(keys), lists: set(lists), dir: dir, lookupEnv: lookupEnv}
	if err := r.walk(&doc, ""); err != nil {
		return nil, err
	}
	if !r.changed {
		return data, nil
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		return nil, fmt.Errorf("re-encode config: %w", err)
	}
	return out, nil
}

func set(names []string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

type resolver struct {
	keys, lists map[string]bool
	dir         string
	lookupEnv   func(string) (string, bool)
	changed     bool
}

// walk resolves the mappings under n; path names n for errors.
func (r *resolver) walk(n *yaml.Node, path string) error {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if err := r.walk(c, path); err != nil {
				return err
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			if err := r.walk(c, path+"["+strconv.Itoa(i)+"]"); err != nil {
				return err
			}
		}
	case yaml.MappingNode:
		if err := r.mapping(n, path); err != nil {
			return err
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if err := r.walk(n.Content[i+1], join(path, n.Content[i].Value)); err != nil {
				return err
			}
		}
	}
	return nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// mapping rewrites the KEY_file / KEY_env pairs of one mapping in place.
func (r *resolver) mapping(n *yaml.Node, path string) error {
	present := map[string]string{} // key → the spelling that set it (KEY, KEY_file or KEY_env)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i].Value
		base, ok := r.base(k)
		if !ok {
			continue
		}
		if prev, dup := present[base]; dup {
			return fmt.Errorf("config %s: set only one of %s and %s", join(path, base), prev, k)
		}
		present[base] = k
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		base, ok := r.base(kn.Value)
		if !ok || base == kn.Value {
			continue
		}
		where := join(path, kn.Value)
		if vn.Kind != yaml.ScalarNode || vn.Value == "" {
			return fmt.Errorf("config %s: want a file path or a variable name", where)
		}
		secret, err := r.read(kn.Value, vn.Value)
		if err != nil {
			return fmt.Errorf("config %s: %w", where, err)
		}
		if !utf8.ValidString(secret) {
			return fmt.Errorf("config %s: the secret is not UTF-8 text", where)
		}
		kn.Value = base
		*vn = r.value(base, secret, vn)
		r.changed = true
	}
	return nil
}

// base returns the secret key that k sets (k itself, or k without _file/_env), and whether
// k sets one at all.
func (r *resolver) base(k string) (string, bool) {
	if r.keys[k] {
		return k, true
	}
	for _, suf := range []string{"_file", "_env"} {
		if b, ok := strings.CutSuffix(k, suf); ok && r.keys[b] {
			return b, true
		}
	}
	return "", false
}

// read fetches the secret that KEY_file / KEY_env (key) names with ref.
func (r *resolver) read(key, ref string) (string, error) {
	if strings.HasSuffix(key, "_env") {
		v, ok := r.lookupEnv(ref)
		if !ok || v == "" {
			return "", fmt.Errorf("environment variable %s is not set (or empty)", ref)
		}
		return v, nil
	}
	p := ref
	if !filepath.IsAbs(p) && r.dir != "" {
		p = filepath.Join(r.dir, p)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("read secret file: %w", err)
	}
	s := string(b)
	if t, ok := strings.CutSuffix(s, "\n"); ok {
		s = strings.TrimSuffix(t, "\r")
	}
	if s == "" {
		return "", fmt.Errorf("secret file %s is empty", p)
	}
	return s, nil
}

// value is the node that holds secret for key: a string, or for a list key a sequence of its
// non-empty lines. It keeps the old node's position for error messages.
func (r *resolver) value(key, secret string, old *yaml.Node) yaml.Node {
	str := func(s string) *yaml.Node {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Style: yaml.DoubleQuotedStyle, Value: s,
			Line: old.Line, Column: old.Column}
	}
	if !r.lists[key] {
		return *str(secret)
	}
	seq := yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Style: yaml.FlowStyle, Line: old.Line, Column: old.Column}
	for _, line := range strings.Split(secret, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			seq.Content = append(seq.Content, str(line))
		}
	}
	return seq
}
