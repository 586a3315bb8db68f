package testutil

import (
	"fmt"
	"net"
	"testing"
)

// FreePort returns a loopback TCP port that was free a moment ago (the UDP port of the same
// number is checked too, so it can serve QUIC). For a process that must be told its port;
// in-process servers listen on 127.0.0.1:0 instead.
func FreePort(t testing.TB) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// FreeAddr returns "127.0.0.1:port" with a port from FreePort: an address nothing listens on
// (yet), for a process that must be told where to listen, or a dial that must fail.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", FreePort(t))
}
