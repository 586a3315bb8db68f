package protocol

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
)

// errSHA256 names the one form every hash in hookrelay's configs takes: agent tokens, the
// admin token, basic-auth passwords and certificate fingerprints.
var errSHA256 = errors.New(`want "sha256:" followed by 64 hex digits`)

// ParseSHA256 reads "sha256:" + 64 hex digits (either case) into the digest.
func ParseSHA256(s string) ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	hx, ok := strings.CutPrefix(s, fingerprintPrefix)
	if !ok || len(hx) != 2*sha256.Size {
		return sum, errSHA256
	}
	if _, err := hex.Decode(sum[:], []byte(hx)); err != nil {
		return sum, errSHA256
	}
	return sum, nil
}
