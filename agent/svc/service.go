// Package svc installs and runs hookagent as a system service: systemd (with
// the hardened unit of systemd/hookagent.service), launchd, the Windows
// service manager and the other init systems kardianos/service knows. It also
// speaks sd_notify (Notify, Ready, Stopping, Watchdog) without dependencies.
package svc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/kardianos/service"
)

// Name is the service's name: the unit hookagent.service, the launchd label,
// the Windows service.
const Name = "hookagent"

// DefaultConfigPath is where the packages put the agent's config.
const DefaultConfigPath = "/etc/hookagent/agent.yaml"

// Errors of the service commands.
var (
	ErrNotRoot          = errors.New("must run as root (try sudo)")
	ErrAlreadyInstalled = errors.New("already installed")
	ErrNotInstalled     = errors.New("not installed")
)

// platformSystemd is kardianos/service's name for systemd.
const platformSystemd = "linux-systemd"

// Options configure a Manager.
type Options struct {
	// ConfigPath is the absolute path of agent.yaml the service runs with.
	// Required by Install; the other commands ignore it.
	ConfigPath string
	// Validate checks the config at a path before Install writes anything and
	// returns its data_dir. Nil skips the check; the data dir is then
	// DefaultDataDir. Under systemd, any other data dir gets a unit that runs
	// as the static User owning it (see datadir.go).
	Validate func(path string) (dataDir string, err error)
	// Executable is the binary the service runs; default os.Executable().
	Executable string
}

// Manager drives the hookagent service of this machine's service manager.
type Manager struct {
	opts Options
	exe  string
	s    service.Service
}

// noop satisfies service.Interface for the control commands, which never run
// the program.
type noop struct{}

func (noop) Start(service.Service) error { return nil }
func (noop) Stop(service.Service) error  { return nil }

// New prepares a Manager for the platform's service manager.
func New(opts Options) (*Manager, error) {
	exe := opts.Executable
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("find executable: %w", err)
		}
	}
	exe, err := filepath.Abs(exe)
	if err != nil {
		return nil, fmt.Errorf("find executable: %w", err)
	}
	s, err := service.New(noop{}, serviceConfig(exe, opts.ConfigPath, mustTemplate(DefaultDataDir)))
	if err != nil {
		return nil, fmt.Errorf("service manager: %w", err)
	}
	return &Manager{opts: opts, exe: exe, s: s}, nil
}

// mustTemplate is unitTemplate for a data dir known to be good.
func mustTemplate(dataDir string) string {
	unit, err := unitTemplate(dataDir)
	if err != nil {
		// The embedded unit is a build input: tests in packages systemd
		// and svc keep it well-formed.
		panic(err)
	}
	return unit
}

// serviceConfig is the kardianos config for running `exe run --config path`
// under systemd with unit, a SystemdScript template.
func serviceConfig(exe, configPath, unit string) *service.Config {
	return &service.Config{
		Name:        Name,
		DisplayName: "hookrelay agent",
		Description: "hookrelay agent: receives webhooks through a tunnel and delivers them locally",
		Executable:  exe,
		Arguments:   []string{"run", "--config", configPath},
		Option: service.KeyValue{
			"SystemdScript": unit,
			"LogOutput":     true, // launchd, SysV, OpenRC: stdout/stderr to files
			"RunAtLoad":     true, // launchd: start at boot like the other platforms
			"OnFailure":     "restart",
		},
	}
}

// Platform names the service manager in use, e.g. "linux-systemd".
func (m *Manager) Platform() string { return m.s.Platform() }

// LogHint says where the service's logs go on this platform.
func (m *Manager) LogHint() string {
	switch {
	case m.s.Platform() == platformSystemd:
		return "journalctl -u " + Name
	case runtime.GOOS == "windows":
		return "Windows Event Viewer: Windows Logs > Application, source " + Name
	case runtime.GOOS == "darwin":
		return "/var/log/" + Name + ".out.log and /var/log/" + Name + ".err.log"
	default:
		return "/var/log/" + Name + ".log and /var/log/" + Name + ".err"
	}
}

// Install registers the service to start at boot, running
// `hookagent run --config ConfigPath`. It does not start it. It refuses when
// not root, when already installed, or when the config is invalid or out of
// the hardened unit's reach, and then changes nothing; if the service manager
// fails half way, what was written is removed.
func (m *Manager) Install() error {
	if err := requireRoot(); err != nil {
		return err
	}
	path := m.opts.ConfigPath
	if !filepath.IsAbs(path) {
		return fmt.Errorf("config path %q is not absolute", path)
	}
	dataDir := DefaultDataDir
	if m.opts.Validate != nil {
		var err error
		if dataDir, err = m.opts.Validate(path); err != nil {
			return fmt.Errorf("invalid config: %w", err)
		}
	}
	if m.s.Platform() == platformSystemd {
		return m.installSystemd(dataDir)
	}
	if _, err := m.s.Status(); !errors.Is(err, service.ErrNotInstalled) {
		return fmt.Errorf("%s: %w", Name, ErrAlreadyInstalled)
	}
	if err := m.s.Install(); err != nil {
		_ = m.s.Uninstall() // nothing was installed before: undo what was
		return fmt.Errorf("install service: %w", err)
	}
	return nil
}

// Uninstall stops the service if it runs and removes it.
func (m *Manager) Uninstall() error {
	if err := requireRoot(); err != nil {
		return err
	}
	if m.s.Platform() == platformSystemd {
		if err := checkUninstallSystemd(); err != nil {
			return err
		}
	} else if _, err := m.s.Status(); errors.Is(err, service.ErrNotInstalled) {
		return fmt.Errorf("%s: %w", Name, ErrNotInstalled)
	}
	_ = m.s.Stop() // stopping a stopped service fails on some platforms
	if err := m.s.Uninstall(); err != nil {
		return fmt.Errorf("uninstall service: %w", err)
	}
	return nil
}

// Start asks the service manager to start the service.
func (m *Manager) Start() error { return m.asRoot("start service", m.s.Start) }

// Stop asks the service manager to stop the service.
func (m *Manager) Stop() error { return m.asRoot("stop service", m.s.Stop) }

// asRoot runs op as root only; its error is wrapped with what.
func (m *Manager) asRoot(what string, op func() error) error {
	if err := requireRoot(); err != nil {
		return err
	}
	if err := op(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// Status reports whether the service runs. A service that is installed but
// not running, or failed, is (false, nil); one that is not installed is
// (false, ErrNotInstalled); err is otherwise set only when the state cannot be
// read at all.
func (m *Manager) Status() (running bool, err error) {
	st, err := m.s.Status()
	switch {
	case err == nil:
		return st == service.StatusRunning, nil
	case errors.Is(err, service.ErrNotInstalled):
		return false, ErrNotInstalled
	case m.s.Platform() == platformSystemd:
		// kardianos reports systemd's "failed" state as an error: the
		// service is installed and not running.
		if systemdUnitExists() {
			return false, nil
		}
	}
	return false, fmt.Errorf("service status: %w", err)
}

func requireRoot() error {
	// Geteuid is -1 on Windows, where the service manager checks rights.
	if uid := os.Geteuid(); uid > 0 {
		return ErrNotRoot
	}
	return nil
}
