//go:build race

package relay

// raceEnabled: the race detector multiplies resident memory, so memory bounds measure the
// Go heap instead of VmRSS.
const raceEnabled = true
