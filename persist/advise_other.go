//go:build !linux

package persist

// adviseRandom is needed on Linux only (see advise_linux.go).
func adviseRandom(string) int { return 0 }

// dropBodyPages is needed on Linux only (see advise_linux.go).
func dropBodyPages(string) int { return 0 }

// dropMapped is needed on Linux only (see advise_linux.go).
func dropMapped(string) int { return 0 }

// fileResident is needed on Linux only (see advise_linux.go).
func fileResident() int64 { return 0 }
