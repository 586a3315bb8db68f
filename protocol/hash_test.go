package protocol

import (
	"crypto/sha256"
	"strings"
	"testing"
)

func TestParseSHA256(t *testing.T) {
	want := sha256.Sum256([]byte("x"))
	lower := Fingerprint([]byte("x"))
	for _, ok := range []string{lower, "sha256:" + strings.ToUpper(lower[len("sha256:"):])} {
		got, err := ParseSHA256(ok)
		if err != nil || got != want {
			t.Errorf("ParseSHA256(%q) = %x, %v", ok, got, err)
		}
	}
	for _, bad := range []string{"", lower[len("sha256:"):], "SHA256:" + lower[7:], lower + "0", lower[:len(lower)-1], lower[:len(lower)-1] + "g"} {
		if _, err := ParseSHA256(bad); err == nil || !strings.Contains(err.Error(), `"sha256:" followed by 64 hex digits`) {
			t.Errorf("ParseSHA256(%q) = %v, want an error saying what is wanted", bad, err)
		}
	}
}
