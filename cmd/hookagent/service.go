package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/hookrelay/hookrelay/agent"
	"github.com/hookrelay/hookrelay/agent/svc"
)

// systemdEnvFile is the EnvironmentFile of the unit the packages and
// `hookagent install` write.
const systemdEnvFile = "/etc/hookagent/env"

// exitCodeError asks main to exit with code, printing nothing more: the
// command has already said what there is to say.
type exitCodeError struct{ code int }

func (e exitCodeError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// ExitCode is the process exit code main should use.
func (e exitCodeError) ExitCode() int { return e.code }

// serviceCommand runs `hookagent install|uninstall|start|stop|status
// [--config agent.yaml]`. status returns exitCodeError{3} when the service is
// not running (as systemctl is-active and LSB do).
func serviceCommand(cmd string, args []string) error {
	fs := flag.NewFlagSet("hookagent "+cmd, flag.ContinueOnError)
	configPath := fs.String("config", svc.DefaultConfigPath, "agent config `file` (YAML) the service runs with")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected argument %q", cmd, fs.Arg(0))
	}
	path, err := filepath.Abs(*configPath)
	if err != nil {
		return fmt.Errorf("config path: %w", err)
	}
	m, err := svc.New(svc.Options{
		ConfigPath: path,
		Validate:   validateConfig,
	})
	if err != nil {
		return err
	}
	out := os.Stdout
	switch cmd {
	case "install":
		if err := m.Install(); err != nil {
			return err
		}
		fmt.Fprintf(out, "installed the %s service (%s): hookagent run --config %s\n", svc.Name, m.Platform(), path)
		fmt.Fprintln(out, "not started yet: check the config, then run: hookagent start")
		fmt.Fprintln(out, "logs:", m.LogHint())
	case "uninstall":
		if err := m.Uninstall(); err != nil {
			return err
		}
		fmt.Fprintf(out, "uninstalled the %s service; the config and the data dir are kept\n", svc.Name)
	case "start":
		if err := m.Start(); err != nil {
			return err
		}
		fmt.Fprintln(out, "started; logs:", m.LogHint())
	case "stop":
		if err := m.Stop(); err != nil {
			return err
		}
		fmt.Fprintln(out, "stopped")
	case "status":
		return printStatus(out, m, path)
	default:
		return fmt.Errorf("unknown service command %q (install, uninstall, start, stop, status)", cmd)
	}
	return nil
}

// validateConfig loads the config as the service will, with HOOKAGENT_TOKEN
// from the unit's EnvironmentFile when the shell has none, and returns its
// data_dir (for the unit to let the service write it).
func validateConfig(path string) (string, error) {
	if os.Getenv(agent.TokenEnv) == "" {
		if tok, err := envFileValue(systemdEnvFile, agent.TokenEnv); err != nil {
			return "", err
		} else if tok != "" {
			os.Setenv(agent.TokenEnv, tok)
		}
	}
	cfg, err := agent.LoadConfig(path)
	if err != nil {
		return "", err
	}
	return cfg.DataDir, nil
}

// envFileValue returns key's value in a systemd EnvironmentFile ("" when the
// file or the key is missing).
func envFileValue(path, key string) (string, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read env file: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !ok || strings.TrimSpace(k) != key {
			continue
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		return v, nil
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read env file: %w", err)
	}
	return "", nil
}

// printStatus prints "running" or "stopped"; when running, also the agent's
// own view from its admin API.
func printStatus(out io.Writer, m *svc.Manager, configPath string) error {
	running, err := m.Status()
	if !running {
		switch {
		case errors.Is(err, svc.ErrNotInstalled):
			fmt.Fprintln(out, "stopped (not installed)")
		case err != nil:
			fmt.Fprintf(out, "stopped (%v)\n", err)
		default:
			fmt.Fprintln(out, "stopped")
		}
		return exitCodeError{code: 3}
	}
	fmt.Fprintln(out, "running")
	fmt.Fprintln(out, adminStatus(configPath))
	return nil
}

// adminStatus fetches GET /admin/api/status from the agent's admin_addr. It
// reads only admin_addr, so it works without the token (which root keeps in
// the env file).
func adminStatus(configPath string) string {
	var cfg struct {
		AdminAddr string `yaml:"admin_addr"`
	}
	if b, err := os.ReadFile(configPath); err != nil {
		return fmt.Sprintf("admin API: config unreadable: %v", err)
	} else if err := yaml.Unmarshal(b, &cfg); err != nil {
		return fmt.Sprintf("admin API: config unreadable: %v", err)
	}
	addr := cfg.AdminAddr
	switch addr {
	case "":
		addr = agent.DefaultAdminAddr
	case "off":
		return "admin API: off (admin_addr: off)"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Sprintf("admin API: bad admin_addr %q", addr)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	url := "http://" + net.JoinHostPort(host, port) + "/admin/api/status"
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Sprintf("admin API unreachable: %v", err)
	}
	// An agent with admin_token wants it: the config holds only its hash.
	token := os.Getenv("HOOKAGENT_ADMIN_TOKEN")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Sprintf("admin API unreachable (%s): %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	text := strings.TrimSpace(string(body))
	if resp.StatusCode == http.StatusUnauthorized && token == "" {
		return fmt.Sprintf("admin API (%s): %s: this agent has admin_token; set HOOKAGENT_ADMIN_TOKEN to the token", url, resp.Status)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("admin API (%s): %s %s", url, resp.Status, text)
	}
	return fmt.Sprintf("admin API (%s):\n%s", url, text)
}
