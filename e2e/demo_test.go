package e2e

import (
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/testutil"
)

// TestDemo runs `hookrelay demo` as a user would: the sample webhook arrives with its
// signature intact, the printed curl line works, and Ctrl-C exits 0.
func TestDemo(t *testing.T) {
	p := newProc(t, "demo", bin.relay, "demo")
	p.start()
	var out string
	testutil.CheckFor(t, 60*time.Second, 50*time.Millisecond, func() error {
		b, _ := os.ReadFile(p.log)
		out = string(b)
		if !strings.Contains(out, "Ctrl-C stops the demo") {
			return fmt.Errorf("demo has not finished its introduction; output so far:\n%s", out)
		}
		return nil
	})
	for _, want := range []string{"verifies at the target: true", "Webhook-Id: ", "Hookrelay-Id: ", "body (139 bytes)"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	// The curl line the demo prints, sent with net/http: its webhook must reach the target.
	m := regexp.MustCompile(`curl -i -X POST '([^']+)'`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no curl line in the demo output:\n%s", out)
	}
	resp, err := http.Post(m[1], "application/json", strings.NewReader(`{"hello": "world"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 202 {
		t.Fatalf("the demo's curl line got %d", resp.StatusCode)
	}
	testutil.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		if !p.logContains(`{"hello": "world"}`) {
			return fmt.Errorf("the curl webhook has not reached the demo target")
		}
		return nil
	})
	if !p.signal(syscall.SIGINT, 20*time.Second) {
		t.Fatal("demo did not exit within 20s of Ctrl-C")
	}
	if c := p.exitCode(); c != 0 {
		t.Errorf("demo exit code after Ctrl-C = %d, want 0", c)
	}
}
