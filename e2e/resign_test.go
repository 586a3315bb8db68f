package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/testutil"
)

// standardWebhooksLib is the Standard Webhooks reference implementation for JavaScript
// (npm standardwebhooks), installed by `npm ci` in e2e/clients.
const standardWebhooksLib = "clients/node_modules/standardwebhooks"

// verifyScript reads [{headers, body_base64}] on stdin and checks each with the reference
// implementation: verify() (signature, then timestamp tolerance, then it parses the payload
// as JSON, so a body that is not JSON fails that last step only), and for every body that
// sign() over its exact bytes is among the signatures sent. It prints how many verified and
// exits 1 at the first that does not.
const verifyScript = `
const { Webhook } = require(process.argv[1]);
const wh = new Webhook(process.argv[2]);
let input = '';
process.stdin.on('data', (d) => { input += d; });
process.stdin.on('end', () => {
  const items = JSON.parse(input);
  for (const [i, it] of items.entries()) {
    const body = Buffer.from(it.body_base64, 'base64');
    const h = it.headers;
    try {
      wh.verify(body, h);
    } catch (e) {
      if (!(e instanceof SyntaxError)) {
        console.error('delivery ' + i + ' (' + h['webhook-id'] + '): ' + e.message);
        process.exit(1);
      }
    }
    const want = wh.sign(h['webhook-id'], new Date(Number(h['webhook-timestamp']) * 1000), body);
    if (!h['webhook-signature'].split(' ').includes(want)) {
      console.error('delivery ' + i + ' (' + h['webhook-id'] + '): signature ' + h['webhook-signature'] + ', reference ' + want);
      process.exit(1);
    }
  }
  console.log('verified ' + items.length);
});
`

// TestResignedDeliveriesVerify: with route sign: standard_webhooks, every delivery the
// target gets (retries included, bodies of every shape, senders with their own webhook-*
// headers) verifies with the Standard Webhooks reference implementation.
func TestResignedDeliveriesVerify(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		testutil.Missing(t, "node is not installed (apt-get install nodejs npm)")
	}
	lib, err := filepath.Abs(standardWebhooksLib)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(lib); err != nil {
		testutil.Missing(t, "standardwebhooks is not installed: run `npm ci` in e2e/clients")
	}
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	dir := t.TempDir()
	token, hash := newToken(t)
	port := testutil.FreePort(t)
	relayCfg := writeFile(t, filepath.Join(dir, "relay.yaml"), fmt.Sprintf(`addr: 127.0.0.1:%d
data_dir: %s
endpoints:
  - name: gh
    tokens: [%q]
`, port, filepath.Join(dir, "relay-data"), hash))
	newProc(t, "relay", bin.relay, "serve", "--config", relayCfg).start()
	w := &world{t: t, relayPort: port}
	w.waitRelay()

	var mu sync.Mutex
	type item struct {
		Headers    map[string]string `json:"headers"`
		BodyBase64 string            `json:"body_base64"`
	}
	var items []item
	attempts := map[string]int{}
	tg := newTarget(t, 0)
	tg.hook.Store(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		var b bytes.Buffer
		b.ReadFrom(r.Body)
		mu.Lock()
		defer mu.Unlock()
		items = append(items, item{Headers: map[string]string{
			"webhook-id":        r.Header.Get("Webhook-Id"),
			"webhook-timestamp": r.Header.Get("Webhook-Timestamp"),
			"webhook-signature": r.Header.Get("Webhook-Signature"),
		}, BodyBase64: base64.StdEncoding.EncodeToString(b.Bytes())})
		id := r.Header.Get("Hookrelay-Id")
		attempts[id]++
		if attempts[id] == 1 && strings.HasSuffix(r.URL.Path, "/retry") {
			rw.WriteHeader(http.StatusServiceUnavailable) // signed again at its own time
			return
		}
		rw.WriteHeader(http.StatusOK)
	}))
	agentCfg := writeFile(t, filepath.Join(dir, "agent.yaml"), fmt.Sprintf(`relay: ws://127.0.0.1:%d
token: %q
data_dir: %s
admin_addr: off
routes:
  - endpoint: gh
    target: %s/in
    backoff_min: 200ms
    backoff_max: 400ms
    sign:
      standard_webhooks: {secret: %q}
`, port, token, filepath.Join(dir, "agent-data"), tg.srv.URL, secret))
	newProc(t, "agent", bin.agent, "run", "--config", agentCfg).start()

	big := bytes.Repeat([]byte(`{"k":"välue"},`), 60000) // ~0.9 MiB: streamed, not held whole
	bodies := []struct {
		path, ctype string
		body        []byte
		own         bool // the sender signs with its own webhook-* headers
	}{
		{"/a", "application/json", []byte(`{"test": 2432232314}`), false},
		{"/retry", "application/json", []byte("{\n  \"spaced\" :  [1, 2]\n}\n"), true},
		{"/b", "text/plain; charset=utf-8", []byte("plain ünïcode text\r\nwith CRLF"), false},
		{"/c", "application/x-www-form-urlencoded", []byte("a=1&b=%F0%9F%98%80"), true},
		{"/big", "application/json", append(append([]byte("["), big...), []byte(`{"end":true}]`)...), false},
		{"/empty", "application/json", nil, false},
	}
	client := &http.Client{Timeout: 30 * time.Second}
	for i, b := range bodies {
		req, _ := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/h/gh%s", port, b.path), bytes.NewReader(b.body))
		req.Header.Set("Content-Type", b.ctype)
		if b.own {
			req.Header.Set("Webhook-Id", fmt.Sprintf("msg_sender_%d", i))
			req.Header.Set("Webhook-Timestamp", "1700000000")
			req.Header.Set("Webhook-Signature", "v1,c2VuZGVyJ3Mgb3du")
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("ingress %s: %d", b.path, resp.StatusCode)
		}
	}
	want := len(bodies) + 1 // one retry
	testutil.WaitFor(t, 30*time.Second, fmt.Sprintf("%d signed deliveries", want), func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(items) >= want
	})
	mu.Lock()
	in, _ := json.Marshal(items)
	mu.Unlock()
	cmd := exec.Command(node, "-e", verifyScript, lib, secret)
	cmd.Stdin = bytes.NewReader(in)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the reference implementation refused a delivery: %v\n%s", err, out)
	}
	t.Logf("standardwebhooks@1.1.1: %s", bytes.TrimSpace(out))
	if !bytes.Contains(out, fmt.Appendf(nil, "verified %d", want)) {
		t.Errorf("reference verifier said %q, want %d verified", out, want)
	}
	// A wrong secret must fail: the check can fail.
	cmd = exec.Command(node, "-e", verifyScript, lib, "whsec_"+base64.StdEncoding.EncodeToString([]byte("another secret of 24 byt")))
	cmd.Stdin = bytes.NewReader(in)
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("verification with another secret passed: %s", out)
	}
}
