package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"strings"
)

// newToken makes an agent or admin token, "hr_" + 256 random bits in lowercase base32, and the
// "sha256:" + hex hash of it that the relay's config holds. `hookrelay token` and the demo
// both make theirs here.
func newToken() (token, hash string) {
	var b [32]byte
	rand.Read(b[:]) // never fails: crypto/rand crashes the program rather than return short
	token = "hr_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
	sum := sha256.Sum256([]byte(token))
	return token, "sha256:" + hex.EncodeToString(sum[:])
}
