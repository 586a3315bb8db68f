package protocol

import (
	"fmt"
	"net/url"
	"strings"
)

// pathRounds is how many rounds of percent-decoding CheckPath looks through: a target, a
// framework in front of it or a proxy may each decode once more.
const pathRounds = 4

// CheckPath is the one rule for a Webhook's path suffix (the part after /h/{endpoint}): the
// relay answers 400 to a suffix it refuses, and the agent refuses to deliver one. Whatever
// passes stays under the target's configured path once appended to it, with a request line in
// origin form. Refused: a suffix that does not start with "/", is not validly percent-encoded
// or has a space, "#" or "?"; and, as sent and after each round of percent-decoding (with "\"
// read as "/"), "//" at the start (read as a host: Go even writes "http://host/…" as the
// request line), a ".." segment, also as "..;…" (path parameters), or a control character.
func CheckPath(suffix string) error {
	if suffix == "" {
		return nil
	}
	if suffix[0] != '/' {
		return fmt.Errorf("path suffix %q does not start with /", clipPath(suffix))
	}
	if _, err := url.PathUnescape(suffix); err != nil {
		return fmt.Errorf("path suffix %q is not validly percent-encoded", clipPath(suffix))
	}
	p := suffix
	for round := 0; round < pathRounds; round++ {
		if err := checkPathRound(p, round == 0); err != nil {
			if round > 0 {
				return fmt.Errorf("path suffix %q, once decoded: %w", clipPath(suffix), err)
			}
			return fmt.Errorf("path suffix %q: %w", clipPath(suffix), err)
		}
		next := unescapeLenient(p)
		if next == p {
			break
		}
		p = next
	}
	return nil
}

// checkPathRound applies the rule to one decoding of the suffix; raw is the suffix as sent,
// where space, "#" and "?" would also end the path (decoded, they are just characters).
func checkPathRound(p string, raw bool) error {
	if strings.ContainsFunc(p, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return fmt.Errorf("has a control character")
	}
	if raw && strings.ContainsAny(p, " #?") {
		return fmt.Errorf("has a space, # or ?")
	}
	p = strings.ReplaceAll(p, `\`, "/")
	if strings.HasPrefix(p, "//") {
		return fmt.Errorf("starts with //, which reads as a host")
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg, _, _ = strings.Cut(seg, ";"); seg == ".." {
			return fmt.Errorf("has a .. segment")
		}
	}
	return nil
}

// unescapeLenient decodes every valid %XX and keeps an invalid one as it is, as a lenient
// target would.
func unescapeLenient(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

// clipPath shortens a suffix quoted in an error, which may be echoed to a sender or logged.
func clipPath(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
