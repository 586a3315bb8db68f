package relay

import (
	"fmt"
	"strings"

	"github.com/hookrelay/hookrelay/protocol"
	"github.com/hookrelay/hookrelay/relay/verify"
)

// validate checks one endpoint (key names it: "endpoints[i]"); seen maps names to their index.
func (e *Endpoint) validate(key string, seen map[string]int, i int) []error {
	var errs []error
	bad := func(sub, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: "+format, append([]any{key, sub}, args...)...))
	}
	switch {
	case e.Name == "":
		bad("name", "missing: every endpoint needs a name (letters, digits, '-', '_' and '.')")
	case !validName(e.Name):
		bad("name", "%q is not allowed: use letters, digits, '-', '_' and '.' (1 to 64 characters, not . or ..)", e.Name)
	default:
		if j, dup := seen[e.Name]; dup {
			bad("name", "%q is used twice (also endpoints[%d]): names must be unique", e.Name, j)
		}
		seen[e.Name] = i
	}
	for j, t := range e.Tokens {
		if !validHash(t) {
			bad(fmt.Sprintf("tokens[%d]", j), "not a token hash: use \"sha256:\" + 64 lowercase hex digits (hookrelay token prints one)")
		}
	}
	if e.Retention < 0 {
		bad("retention", "%v is negative: use a duration like 72h", e.Retention)
	}
	if e.OutcomeTimeout < 0 {
		bad("outcome_timeout", "%v is negative: use a duration like 24h", e.OutcomeTimeout)
	}
	if e.Quota < 0 {
		bad("quota", "%d is negative: use a size like 1GiB, or 0 for none", e.Quota)
	}
	if e.Rate < 0 {
		bad("rate", "%v is negative: use requests per second, or 0 for unlimited", e.Rate)
	}
	if e.Burst < 0 {
		bad("burst", "%d is negative: use a positive count", e.Burst)
	}
	if e.MaxBody < 0 {
		bad("max_body", "%d is negative: use a size like 25MiB", e.MaxBody)
	}
	groups := map[string]bool{}
	for j, g := range e.Groups {
		switch {
		case !ValidGroup(g):
			bad(fmt.Sprintf("groups[%d]", j), "%q is not allowed: use letters, digits, '-' and '_' (1 to 64 characters)", g)
		case groups[g]:
			bad(fmt.Sprintf("groups[%d]", j), "%q is listed twice", g)
		}
		groups[g] = true
	}
	errs = append(errs, e.validateHandshake(key)...)
	errs = append(errs, e.Sync.validate(key)...)
	if _, err := verify.New(e.Verify); err != nil {
		// verify's errors name their key from "verify." on, one per line.
		for _, line := range strings.Split(err.Error(), "\n") {
			errs = append(errs, fmt.Errorf("%s.%s", key, line))
		}
	}
	return errs
}

func validName(s string) bool {
	if len(s) > 64 || s == "." || s == ".." {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return s != ""
}

// ValidGroup reports whether s may name a consumer group: letters, digits, '-' and '_', 1 to
// 64 of them (the Badger store keeps a group's copy of a webhook under its id + "~" + group).
func ValidGroup(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// groupsOf is e's consumer groups, default [default] (an endpoint built without defaults).
func groupsOf(e *Endpoint) []string {
	if len(e.Groups) == 0 {
		return []string{DefaultGroup}
	}
	return e.Groups
}

// validHash reports whether s is "sha256:" + 64 lowercase hex digits.
func validHash(s string) bool {
	_, err := protocol.ParseSHA256(s)
	return err == nil && s == strings.ToLower(s)
}
