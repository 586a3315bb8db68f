package main

import (
	"bytes"
	"image/png"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSmoke runs the whole command with tiny sizes over ws and quic: the table has every row
// with figures in every relayed column, and the docs it writes hold the table and a PNG that
// decodes.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds both binaries and runs them (10–30 s)")
	}
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	err := mainErr([]string{"-n1k", "200", "-n64k", "20", "-paced", "500ms", "-large", "1",
		"-idle", "20", "-backlog", "200", "-transports", "ws,quic", "-out", out}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("hookbench: %v\n%s", err, stderr.String())
	}
	table := stdout.String()
	for _, row := range []string{
		"| shape | direct, discarding target | direct, durable target | hookrelay ws | hookrelay quic |",
		"| 1 KiB burst (200), 16 senders, delivered/s |",
		"| 64 KiB burst (20), delivered/s; e2e p50 ms |",
		"| paced 100/s 1 KiB (500ms), e2e p50 / p99 ms; answered p50 ms |",
		"| 1 × 10 MiB, p50 ms; peak RSS relay / agent MiB |",
		"| peak RSS over the 64 KiB burst, relay / agent MiB |",
		"| agent RSS idle / peak over every shape, MiB |",
		"| 20 idle agents: relay RSS KiB each; all connected in s; relay CPU idle |",
		"| backlog 200 × 1 KiB: accepted/s; relay peak MiB, accepting / draining; drained/s; CPU per webhook drained, relay / agent µs |",
		"Stripped hookagent binary:",
	} {
		if !strings.Contains(table, row) {
			t.Errorf("table has no %q:\n%s", row, table)
		}
	}
	// every relayed 1 KiB burst figure carries its ratio to direct and a goal mark
	for _, line := range strings.Split(table, "\n") {
		if strings.HasPrefix(line, "| 1 KiB burst") && strings.Count(line, "×)") != 2 {
			t.Errorf("1 KiB burst row without a ratio per transport: %q", line)
		}
		if strings.HasPrefix(line, "| backlog") && !strings.Contains(line, "×)") {
			t.Errorf("backlog row without a drain figure: %q", line)
		}
	}
	md, err := os.ReadFile(filepath.Join(out, "BENCHMARKS.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(md), "| 1 KiB burst (200)") || !strings.Contains(string(md), "Machine: ") {
		t.Errorf("BENCHMARKS.md lacks the table or the machine:\n%s", md)
	}
	f, err := os.Open(filepath.Join(out, "benchmarks.png"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("benchmarks.png: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 500 || b.Dy() < 300 {
		t.Errorf("chart is %v", b)
	}
}

// The durable target has the body in its file before it answers 200; a phase starts the file
// afresh.
func TestDurableTargetKeepsBodies(t *testing.T) {
	path := filepath.Join(t.TempDir(), "target.store")
	tg, err := newTarget(path)
	if err != nil {
		t.Fatal(err)
	}
	defer tg.close()
	body := bytes.Repeat([]byte("0123456789abcdef"), 10<<10) // 160 KiB: several writes
	for _, want := range [][]byte{body, append(body, body...)} {
		tg.expect("p", 1)
		req, _ := http.NewRequest(http.MethodPost, tg.url, bytes.NewReader(want))
		req.Header.Set("X-Phase", "p")
		req.Header.Set("X-Seq", "0")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("target answered %d", resp.StatusCode)
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("the target's file holds %d bytes, want the %d of this phase (%v)", len(got), len(want), err)
		}
	}
	if n := tg.failed.Load(); n != 0 {
		t.Fatalf("%d stores failed", n)
	}
}
