//go:build !linux

package persist

// adviseRandom is needed on Linux only (see advise_linux.go).
func adviseRandom(string) int { return 0 }

// dropBodyPages is needed on Linux only (see advise_linux.go).
func dropBodyPages(string) int { return 0 }
