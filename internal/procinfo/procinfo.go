// Package procinfo is what the programs and tests that run hookrelay and hookagent as child
// processes (the e2e tests, hookbench) need of Linux's view of a process, and the environment
// to start one in. It imports nothing of ours.
package procinfo

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// Status returns a "Field: N kB" value of /proc/PID/status in KiB (VmHWM: peak RSS, VmRSS),
// 0 when it cannot be read.
func Status(pid int, field string) int64 { return File(fmt.Sprintf("/proc/%d/status", pid), field) }

// File returns a "Field: N kB" value of a /proc file such as /proc/meminfo, 0 when unknown.
func File(path, field string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			var kb int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return kb
		}
	}
	return 0
}

// CleanEnv is this process's environment without proxies or an agent token, which would change
// what a child's config says.
func CleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(k) {
		case "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "HOOKAGENT_TOKEN":
			continue
		}
		env = append(env, kv)
	}
	return env
}
