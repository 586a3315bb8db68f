package svc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/hookrelay/hookrelay/systemd"
)

// DefaultDataDir is the agent's data_dir under the packaged unit: its StateDirectory, which
// systemd creates and hands to the unit's DynamicUser.
const DefaultDataDir = "/var/lib/" + Name

// User is the static system user `hookagent install` creates when data_dir is elsewhere: a
// DynamicUser cannot own a directory of the operator's choosing (systemd chowns only its
// StateDirectory, never a ReadWritePaths= directory), a static user can.
const User = Name

// closedDirs may not hold a data_dir: the hardened unit hides them (ProtectHome, PrivateTmp,
// PrivateDevices, ProtectKernelTunables) or they are the system's own.
var closedDirs = append([]string{"/proc", "/sys", "/dev", "/boot", "/etc", "/usr", "/bin", "/sbin", "/lib", "/run/systemd"}, hiddenDirs...)

// checkDataDir refuses a data_dir the static-user unit cannot name or reach: relative, the
// root, in a hidden or system directory, or with characters systemd's ReadWritePaths= would
// split or expand (whitespace, quotes, backslashes, '%').
func checkDataDir(dir string) error {
	switch {
	case !filepath.IsAbs(dir):
		return fmt.Errorf("config data_dir %q is not absolute: the service needs an absolute path", dir)
	case filepath.Clean(dir) != dir || dir == "/":
		return fmt.Errorf("config data_dir %q: write it clean (no trailing slash, no . or ..) and not /", dir)
	case strings.ContainsAny(dir, " \t\n\r\"'\\%;{}") || strings.IndexFunc(dir, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0:
		return fmt.Errorf("config data_dir %q: a systemd unit cannot name a path with whitespace, quotes, backslashes, braces, ';' or '%%'", dir)
	}
	for _, d := range closedDirs {
		if dir == d || strings.HasPrefix(dir, d+"/") {
			return fmt.Errorf("config data_dir %q is under %s, which the hardened unit hides or keeps read-only: use e.g. /srv/hookagent or %s", dir, d, DefaultDataDir)
		}
	}
	return nil
}

// dataDirUnit turns the kardianos template of the packaged unit into one for a static user
// who owns dir: User=/Group= instead of DynamicUser=, and dir as the one writable path instead
// of the StateDirectory. Everything else (and so the exposure) stays.
func dataDirUnit(tmpl, dir string) (string, error) {
	for _, r := range []struct{ old, new string }{
		{"\nDynamicUser=yes\n", "\nUser=" + User + "\nGroup=" + User + "\n"},
		{"\nStateDirectory=hookagent\nStateDirectoryMode=0700\n", "\nReadWritePaths=" + dir + "\n"},
	} {
		if strings.Count(tmpl, r.old) != 1 {
			return "", fmt.Errorf("hookagent.service: want exactly one %q", strings.TrimSpace(r.old))
		}
		tmpl = strings.Replace(tmpl, r.old, r.new, 1)
	}
	// The packaged unit's header comment describes the DynamicUser unit: say what this one
	// does instead.
	i := strings.Index(tmpl, "\n[Unit]\n")
	if i < 0 {
		return "", errors.New("hookagent.service: no [Unit] section")
	}
	return "# hookagent, written by `hookagent install` for data_dir " + dir + ".\n" +
		"# The program runs as the static user " + User + ", which owns that directory, its only\n" +
		"# writable place. The token goes in /etc/hookagent/env (mode 0600) as HOOKAGENT_TOKEN=...\n" +
		"# Logs: journalctl -u hookagent" + tmpl[i:], nil
}

// unitTemplate is the SystemdScript for dataDir: the packaged unit for DefaultDataDir, the
// static-user unit otherwise.
func unitTemplate(dataDir string) (string, error) {
	tmpl, err := systemd.AgentTemplate()
	if err != nil || dataDir == DefaultDataDir {
		return tmpl, err
	}
	return dataDirUnit(tmpl, dataDir)
}

// prepareDataDir creates the static user (a system account with no login) unless it exists,
// creates dir (parents mode 0755) and hands it, with what it already holds, to that user with
// mode 0700. Both stay after uninstall: they hold the agent's data.
func prepareDataDir(dir string) error {
	u, err := user.Lookup(User)
	if unknown := (user.UnknownUserError("")); errors.As(err, &unknown) {
		out, cerr := exec.Command("useradd", "--system", "--user-group", "--no-create-home",
			"--home-dir", dir, "--shell", "/usr/sbin/nologin", "--comment", "hookrelay agent", User).CombinedOutput()
		if cerr != nil {
			return fmt.Errorf("create user %s (useradd): %w: %s", User, cerr, strings.TrimSpace(string(out)))
		}
		u, err = user.Lookup(User)
	}
	if err != nil {
		return fmt.Errorf("look up user %s: %w", User, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("user %s: %w", User, err)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("create data_dir: %w", err)
	}
	// The service reaches dir through its parents as an "other" user.
	if err := openToOthers(filepath.Dir(dir), 0o001); err != nil {
		return fmt.Errorf("data_dir %s is out of reach of user %s: %w", dir, User, err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create data_dir: %w", err)
	}
	if fi, err := os.Lstat(dir); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	} else if !fi.IsDir() {
		return fmt.Errorf("data_dir %s is not a directory (a symlink is not followed)", dir)
	}
	err = filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err == nil {
		err = os.Chmod(dir, 0o700)
	}
	if err != nil {
		return fmt.Errorf("give data_dir to user %s: %w", User, err)
	}
	return nil
}
