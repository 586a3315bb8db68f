package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hookrelay/hookrelay/internal/procinfo"
)

// bins are the built relay and agent binaries.
type bins struct {
	relay, agent string
	agentSize    int64 // bytes of the stripped agent binary
}

// build builds both programs stripped (the agent's size is one of the goals) from the
// module root into dir.
func build(ctx context.Context, root, dir string) (bins, error) {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", dir+"/",
		"./cmd/hookrelay", "./cmd/hookagent")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return bins{}, fmt.Errorf("go build: %w: %s", err, out)
	}
	b := bins{relay: filepath.Join(dir, "hookrelay"), agent: filepath.Join(dir, "hookagent")}
	st, err := os.Stat(b.agent)
	if err != nil {
		return bins{}, fmt.Errorf("stat agent binary: %w", err)
	}
	b.agentSize = st.Size()
	return b, nil
}

// moduleRoot walks up from the working directory to the directory holding go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("module root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", errors.New("module root: no go.mod above the working directory")
		}
		dir = up
	}
}

// proc is one child process, its output in a log file.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

func startProc(log string, path string, args ...string) (*proc, error) {
	f, err := os.OpenFile(log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = procinfo.CleanEnv()
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", filepath.Base(path), err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{}), log: log}
	go func() { cmd.Wait(); f.Close(); close(p.done) }()
	return p, nil
}

// stop ends the process (SIGTERM, then SIGKILL) and waits for it; it is idempotent.
func (p *proc) stop() {
	if p == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(10 * time.Second):
	}
	p.cmd.Process.Kill()
	<-p.done
}

// status reads one kB field of /proc/PID/status (VmRSS, VmHWM) in KiB; 0 if unknown.
func (p *proc) status(field string) int64 { return procinfo.Status(p.cmd.Process.Pid, field) }

// cpu is the CPU time (user and system) the process used so far, from /proc/PID/stat; 0 if
// unknown. Its resolution is the clock tick (10 ms): enough over a burst of thousands.
func (p *proc) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces: count fields after its closing parenthesis.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	var utime, stime int64
	fmt.Sscan(f[11], &utime)
	fmt.Sscan(f[12], &stime)
	return time.Duration(utime+stime) * (time.Second / 100) // USER_HZ is 100 on Linux
}

func (p *proc) resetPeak() {
	os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p.cmd.Process.Pid), []byte("5"), 0)
}

func (p *proc) peakMiB() float64 { return float64(p.status("VmHWM")) / 1024 }

func runOut(path string, args ...string) (string, error) {
	var out, errb bytes.Buffer
	cmd := exec.Command(path, args...)
	cmd.Env = procinfo.CleanEnv()
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", filepath.Base(path), args[0], err, errb.String())
	}
	return strings.TrimSpace(out.String()), nil
}

// freePort returns a port free for both TCP and UDP on 127.0.0.1 right now.
func freePort() (int, error) {
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			u.Close()
			return port, nil
		}
	}
	return 0, errors.New("free port: none free for both TCP and UDP")
}

// stopTrying, returned by waitFor's fn, ends the wait at once with its error.
type stopTrying struct{ err error }

func (s stopTrying) Error() string { return s.err.Error() }

// exited is an error naming the log when the process has ended, nil while it runs.
func (p *proc) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited: %s (log %s)", filepath.Base(p.cmd.Path), p.cmd.ProcessState, p.log)
	default:
		return nil
	}
}

// waitFor polls fn every step until it returns nil or total passes, or fn returns a
// stopTrying.
func waitFor(total, step time.Duration, fn func() error) error {
	end := time.Now().Add(total)
	for {
		err := fn()
		if err == nil {
			return nil
		}
		var stop stopTrying
		if errors.As(err, &stop) {
			return stop.err
		}
		if time.Now().After(end) {
			return fmt.Errorf("after %v: %w", total, err)
		}
		time.Sleep(step)
	}
}

// selfSigned writes a self-signed certificate for 127.0.0.1 (for wss://, pinned by
// fingerprint) as cert.pem and key.pem into dir.
func selfSigned(dir string) (certFile, keyFile string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("tls key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "hookbench"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", fmt.Errorf("tls cert: %w", err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", fmt.Errorf("tls key: %w", err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return "", "", fmt.Errorf("write cert: %w", err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return "", "", fmt.Errorf("write key: %w", err)
	}
	return certFile, keyFile, nil
}

// newClient is the senders' HTTP client: no proxy, enough idle connections for every sender,
// and (for the wss relay, whose ingress is https too) the bench's own certificate trusted.
func newClient() *http.Client {
	return &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{
		Proxy: nil, MaxIdleConnsPerHost: 64,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // loopback, our own self-signed cert
	}}
}
