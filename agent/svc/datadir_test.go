package svc

import (
	"strings"
	"testing"

	"github.com/hookrelay/hookrelay/systemd"
)

func TestCheckDataDir(t *testing.T) {
	for dir, want := range map[string]string{
		"/srv/hookagent":          "",
		"/mnt/data/hook-agent_1":  "",
		"/var/lib/hookagent-blue": "",
		"data":                    "not absolute",
		"/srv/hookagent/":         "clean",
		"/srv/../etc":             "clean",
		"/":                       "clean",
		"/srv/my data":            "whitespace",
		"/srv/100%":               "'%'",
		`/srv/a\b`:                "backslashes",
		"/srv/{{Path}}":           "braces",
		"/home/ann/hook":          "under /home",
		"/tmp/hook":               "under /tmp",
		"/etc/hookagent":          "under /etc",
		"/usr/local/hookagent":    "under /usr",
		"/proc/1":                 "under /proc",
	} {
		err := checkDataDir(dir)
		switch {
		case want == "" && err != nil:
			t.Errorf("checkDataDir(%q) = %v, want ok", dir, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("checkDataDir(%q) = %v, want an error saying %q", dir, err, want)
		}
	}
}

// TestUnitTemplate checks the unit for a custom data_dir against the packaged one: the static
// user and the one writable path replace DynamicUser and the StateDirectory, and nothing else
// changes.
func TestUnitTemplate(t *testing.T) {
	packaged, err := systemd.AgentTemplate()
	if err != nil {
		t.Fatal(err)
	}
	if got := mustTemplate(DefaultDataDir); got != packaged {
		t.Fatal("the default data dir does not get the packaged unit")
	}
	got := mustTemplate("/srv/hookagent")
	for _, want := range []string{"\nUser=hookagent\n", "\nGroup=hookagent\n", "\nReadWritePaths=/srv/hookagent\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("unit lacks %q", strings.TrimSpace(want))
		}
	}
	for _, gone := range []string{"DynamicUser=", "StateDirectory"} {
		if strings.Contains(got, "\n"+gone) {
			t.Errorf("unit still has %s", gone)
		}
	}
	// Line by line, comments aside: the custom unit drops exactly the three lines and adds
	// the three new ones.
	count := func(s string) map[string]int {
		m := map[string]int{}
		for _, l := range strings.Split(s, "\n") {
			m[l]++
		}
		return m
	}
	a, b := count(packaged), count(got)
	var dropped, added []string
	for l, n := range a {
		if b[l] < n && !strings.HasPrefix(l, "#") {
			dropped = append(dropped, l)
		}
	}
	for l, n := range b {
		if a[l] < n && !strings.HasPrefix(l, "#") {
			added = append(added, l)
		}
	}
	if len(dropped) != 3 || len(added) != 3 {
		t.Errorf("custom unit dropped %q and added %q, want 3 lines each", dropped, added)
	}
}
