package relay

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hookrelay/hookrelay/internal/testutil"
)

// Cluster mode's keys parse with their defaults; relative files are the config file's.
func TestParseConfigStoreNATS(t *testing.T) {
	c, err := parseConfig([]byte(`
node_id: relay-a
store:
  nats:
    urls: ["nats://10.0.0.1:4222", "tls://10.0.0.2:4222", "10.0.0.3:4222"]
endpoints: [{name: a}]
`))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Clustered() || c.NodeID != "relay-a" || len(c.Store.NATS.URLs) != 3 || c.Store.NATS.Replicas != 3 {
		t.Fatalf("store parsed wrong: %+v %+v", c, c.Store.NATS)
	}
	if c.LeaseTTL != defaultClusterLeaseTTL {
		t.Fatalf("lease_ttl in cluster mode defaults to %v, want %v (a dead relay's leases must run out soon)", c.LeaseTTL, defaultClusterLeaseTTL)
	}
	host, _ := os.Hostname()
	c, err = parseConfig([]byte("endpoints: [{name: a}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Clustered() || c.NodeID != host || c.LeaseTTL != defaultLeaseTTL {
		t.Fatalf("without store: clustered %v, node_id %q, lease_ttl %v, want the hostname %q and %v", c.Clustered(), c.NodeID, c.LeaseTTL, host, defaultLeaseTTL)
	}

	dir := t.TempDir()
	path := filepath.Join(dir, "relay.yaml")
	os.WriteFile(path, []byte(`
store: {nats: {urls: [nats://127.0.0.1:4222], replicas: 1, creds: relay.creds, tls: {ca: ca.pem, cert: c.pem, key: /k.pem}}}
endpoints: [{name: a}]
`), 0o600)
	c, err = LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	n := c.Store.NATS
	if n.Replicas != 1 || n.Creds != filepath.Join(dir, "relay.creds") || n.TLS.CA != filepath.Join(dir, "ca.pem") ||
		n.TLS.Cert != filepath.Join(dir, "c.pem") || n.TLS.Key != "/k.pem" {
		t.Fatalf("paths: %+v %+v", n, n.TLS)
	}
}

func TestParseConfigStoreBad(t *testing.T) {
	ep := "endpoints: [{name: a}]\n"
	testutil.CheckRejects(t, func(b []byte) error { _, err := parseConfig(b); return err }, []testutil.Rejected{
		{"unknown store", "store: {redis: {}}\n" + ep, "redis"},
		{"no urls", "store: {nats: {replicas: 3}}\n" + ep, "store.nats.urls: none given"},
		{"bad url scheme", "store: {nats: {urls: [\"http://x:4222\"]}}\n" + ep, "store.nats.urls[0]"},
		{"replicas high", "store: {nats: {urls: [nats://x], replicas: 7}}\n" + ep, "store.nats.replicas: 7 is out of range"},
		{"replicas negative", "store: {nats: {urls: [nats://x], replicas: -1}}\n" + ep, "store.nats.replicas"},
		{"tls half", "store: {nats: {urls: [nats://x], tls: {cert: a.pem}}}\n" + ep, "store.nats.tls"},
		{"node id", "node_id: \"relay a\"\n" + ep, "node_id"},
	})
}
