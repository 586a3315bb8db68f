package protocol

import (
	"strings"
	"testing"
)

func TestCheckPath(t *testing.T) {
	for _, ok := range []string{
		"", "/", "/a/b", "/a%2fb%20c", "/{x}", "/caf\xc3\xa9", "/a//b", "/a..b/...", "/.well-known/x",
		"/a/.;b", "/%2e/x", "/a%3Fb%23c", "/%25zz", "/a;b=c",
	} {
		if err := CheckPath(ok); err != nil {
			t.Errorf("CheckPath(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []struct{ suffix, why string }{
		{"nosl", "start with /"},
		{"/a b", "space"},
		{"/a?b", "?"},
		{"/a#b", "#"},
		{"/%zz", "percent-encoded"},
		{"/a\x00", "control"},
		{"/%0a", "control"},
		{"//evil.example/x{", "//"},
		{"//evil.example", "//"},
		{"/\\evil.example", "//"},
		{"/%2fevil.example", "//"},
		{"/%5Cevil.example", "//"},
		{"/%252fevil.example", "//"},
		{"/..", ".."},
		{"/a/../b", ".."},
		{"/a\\..\\b", ".."},
		{"/%2e%2E/x", ".."},
		{"/.%2e", ".."},
		{"/a%2f..%2fb", ".."},
		{"/%252e%252e/x", ".."},
		{"/%25252e%25252e/x", ".."},
		{"/..;/admin", ".."},
		{"/a/..;jsessionid=1/b", ".."},
		{"/.%2e%3b/admin", ".."},
	} {
		err := CheckPath(bad.suffix)
		if err == nil {
			t.Errorf("CheckPath(%q) passed", bad.suffix)
			continue
		}
		msg := err.Error()
		if reason := msg[strings.LastIndex(msg, `"`)+1:]; !strings.HasPrefix(msg, "path suffix") || !strings.Contains(reason, bad.why) {
			t.Errorf("CheckPath(%q) = %v, want an error naming %q", bad.suffix, err, bad.why)
		}
	}
}
