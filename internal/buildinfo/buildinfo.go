// Package buildinfo makes the version line that both commands print for --version, so that
// they read their build the same way.
package buildinfo

import "runtime/debug"

// Line is "PROG VERSION COMMIT". version and commit are what the build set with -ldflags
// (-X main.version=… -X main.commit=…); while they are still "dev" and "unknown", the module
// version and the VCS revision of Go's build info stand in.
func Line(prog, version, commit string) string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		if version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && commit == "unknown" && s.Value != "" {
				commit = s.Value
			}
		}
	}
	return prog + " " + version + " " + commit
}
