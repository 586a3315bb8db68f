package svc

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/kardianos/service"
)

// unitPath is where kardianos/service writes the unit of `hookagent install`.
const unitPath = "/etc/systemd/system/" + Name + ".service"

// vendorUnits are where the .deb/.rpm packages put the same unit.
var vendorUnits = []string{
	"/usr/lib/systemd/system/" + Name + ".service",
	"/lib/systemd/system/" + Name + ".service",
}

// hiddenDirs are invisible to the hardened unit: ProtectHome= hides the
// first three, PrivateTmp= replaces the others with empty directories.
var hiddenDirs = []string{"/home", "/root", "/run/user", "/tmp", "/var/tmp"}

// installSystemd writes the hardened unit through kardianos/service after
// checking that the service's user will be able to run the binary and read
// the config. For DefaultDataDir that is the packaged unit (DynamicUser);
// for another dataDir, the static-user unit, after creating the user and
// handing it the directory.
func (m *Manager) installSystemd(dataDir string) error {
	if _, err := os.Lstat(unitPath); err == nil {
		return fmt.Errorf("%s: %w", unitPath, ErrAlreadyInstalled)
	}
	for _, p := range vendorUnits {
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("%s: %w by a package; edit %s, then run: systemctl enable --now %s",
				p, ErrAlreadyInstalled, DefaultConfigPath, Name)
		}
	}
	if err := reachable(m.exe, 0o005, "binary", "e.g. /usr/local/bin/"+Name+", mode 0755"); err != nil {
		return err
	}
	if err := reachable(m.opts.ConfigPath, 0o004, "config",
		"e.g. "+DefaultConfigPath+", mode 0644; keep the token in /etc/"+Name+"/env as HOOKAGENT_TOKEN=… with mode 0600"); err != nil {
		return err
	}
	if filepath.IsAbs(dataDir) {
		dataDir = filepath.Clean(dataDir) // "/var/lib/hookagent/" is the default one
	}
	if dataDir != DefaultDataDir {
		if err := checkDataDir(dataDir); err != nil {
			return err
		}
		unit, err := unitTemplate(dataDir)
		if err != nil {
			return err
		}
		s, err := service.New(noop{}, serviceConfig(m.exe, m.opts.ConfigPath, unit))
		if err != nil {
			return fmt.Errorf("service manager: %w", err)
		}
		if err := prepareDataDir(dataDir); err != nil {
			return err
		}
		m.s = s
	}
	if err := m.s.Install(); err != nil {
		// Nothing was there before: remove the unit kardianos may have left
		// (it writes the file before enabling it), disabling it if it can.
		if _, statErr := os.Lstat(unitPath); statErr == nil {
			if m.s.Uninstall() != nil {
				_ = os.Remove(unitPath)
			}
		}
		return fmt.Errorf("install service: %w", err)
	}
	return nil
}

// reachable checks that the service's unprivileged user can reach
// path: not in a directory the unit hides, "other" permission bits perm on
// the file and search permission on every parent directory.
func reachable(path string, perm fs.FileMode, what, hint string) error {
	if d := hiddenBy(path); d != "" {
		return fmt.Errorf("%s %s is under %s, which the hardened unit cannot see (ProtectHome, PrivateTmp): move it (%s)",
			what, path, d, hint)
	}
	if err := openToOthers(path, perm); err != nil {
		return fmt.Errorf("%s %s is out of reach of the service's dynamic user: %w (%s)", what, path, err, hint)
	}
	return nil
}

// hiddenBy returns the directory of hiddenDirs that holds path, or "".
func hiddenBy(path string) string {
	for _, d := range hiddenDirs {
		if path == d || strings.HasPrefix(path, d+"/") {
			return d
		}
	}
	return ""
}

// openToOthers checks the "other" permission bits perm on path and search
// permission (x) on each of its parent directories.
func openToOthers(path string, perm fs.FileMode) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&perm != perm {
		return fmt.Errorf("mode %04o lacks %04o: %w", fi.Mode().Perm(), perm, fs.ErrPermission)
	}
	for dir := filepath.Dir(path); ; dir = filepath.Dir(dir) {
		di, err := os.Stat(dir)
		if err != nil {
			return err
		}
		if di.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("directory %s has mode %04o: %w", dir, di.Mode().Perm(), fs.ErrPermission)
		}
		if dir == filepath.Dir(dir) {
			return nil
		}
	}
}

// systemdUnitExists reports whether any hookagent unit is on disk.
func systemdUnitExists() bool {
	for _, p := range append([]string{unitPath}, vendorUnits...) {
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	return false
}

// checkUninstallSystemd refuses to remove a unit `hookagent install` did not write.
func checkUninstallSystemd() error {
	if _, err := os.Lstat(unitPath); err == nil {
		return nil
	}
	for _, p := range vendorUnits {
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("%s comes from a package: %w with hookagent install; stop it with systemctl disable --now %s, or remove the package",
				p, ErrNotInstalled, Name)
		}
	}
	return fmt.Errorf("%s: %w", unitPath, ErrNotInstalled)
}
