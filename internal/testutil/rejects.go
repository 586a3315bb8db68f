package testutil

import (
	"strings"
	"testing"
)

// Rejected is {name, input, want}: an input a parser must refuse, and what its error must
// name (a key, a value).
type Rejected [3]string

// CheckRejects runs parse on each case as a subtest: it must fail with an error containing Want.
func CheckRejects(t *testing.T, parse func(input []byte) error, cases []Rejected) {
	t.Helper()
	for _, tc := range cases {
		name, input, want := tc[0], tc[1], tc[2]
		t.Run(name, func(t *testing.T) {
			err := parse([]byte(input))
			if err == nil {
				t.Fatalf("accepted, want an error naming %q:\n%s", want, input)
			}
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("error %q does not name %q", err, want)
			}
		})
	}
}
