package verify

import (
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"net/http"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/hookrelay/hookrelay/protocol"
)

// maxBcryptCost bounds the work an unauthenticated request can make the relay do: each
// check of a bcrypt password costs 2^cost rounds (cost 12 is about a quarter of a second).
const maxBcryptCost = 12

// basic checks HTTP Basic auth against one user and a password hash.
type basic struct {
	userSum [sha256.Size]byte // sha256 of the user, so the compare does not leak its length
	sha     []byte            // sha256 of the password, or nil
	bcrypt  []byte            // bcrypt hash of the password, or nil
	passed  passedCache       // Authorization headers bcrypt accepted lately
}

func newBasic(c *BasicConfig) (*basic, error) {
	if c.User == "" {
		return nil, fmt.Errorf("verify.basic.user: required")
	}
	b := &basic{userSum: sha256.Sum256([]byte(c.User))}
	const want = `must be "sha256:<64 hex digits>" or a bcrypt hash ($2a$, $2b$ or $2y$)`
	switch h := c.PasswordHash; {
	case h == "":
		return nil, fmt.Errorf("verify.basic.password_hash: required: %s", want)
	case strings.HasPrefix(h, "sha256:"):
		sum, err := protocol.ParseSHA256(h)
		if err != nil {
			return nil, fmt.Errorf("verify.basic.password_hash: %s", want)
		}
		b.sha = sum[:]
	case strings.HasPrefix(h, "$2a$") || strings.HasPrefix(h, "$2b$") || strings.HasPrefix(h, "$2y$"):
		cost, err := bcrypt.Cost([]byte(h))
		if err != nil || len(h) != 60 {
			return nil, fmt.Errorf("verify.basic.password_hash: not a valid bcrypt hash: %s", want)
		}
		if cost > maxBcryptCost {
			return nil, fmt.Errorf("verify.basic.password_hash: bcrypt cost %d is too high: use a cost of at most %d, since every request pays it", cost, maxBcryptCost)
		}
		b.bcrypt = []byte(h)
	default:
		return nil, fmt.Errorf("verify.basic.password_hash: %s", want)
	}
	return b, nil
}

func (b *basic) check(r *http.Request, _ []byte, _ time.Time) *Failure {
	if r.Header.Get("Authorization") == "" {
		return unauthorized(SchemeBasic, "missing Authorization header")
	}
	user, pass, ok := r.BasicAuth()
	if !ok {
		return unauthorized(SchemeBasic, "malformed Authorization header: want Basic credentials")
	}
	userSum := sha256.Sum256([]byte(user))
	userOK := hmac.Equal(userSum[:], b.userSum[:])
	// The password is checked even for a wrong user, so timing does not tell users apart.
	var passOK bool
	if b.sha != nil {
		sum := sha256.Sum256([]byte(pass))
		passOK = hmac.Equal(sum[:], b.sha)
	} else {
		key := sha256.Sum256([]byte(r.Header.Get("Authorization")))
		if passOK = b.passed.has(key, time.Now()); !passOK {
			ok, busy := compareBcrypt(r.Context(), b.bcrypt, []byte(pass))
			if busy {
				return &Failure{Status: http.StatusTooManyRequests, Scheme: SchemeBasic,
					Reason: "busy: too many password checks at once, retry later"}
			}
			if passOK = ok; ok && userOK {
				b.passed.add(key, time.Now())
			}
		}
	}
	if !userOK || !passOK {
		return unauthorized(SchemeBasic, "wrong user or password")
	}
	return nil
}
