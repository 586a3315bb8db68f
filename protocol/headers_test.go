package protocol

import "testing"

func TestHopByHop(t *testing.T) {
	hop := HopByHop([]string{"x-a, ,Keep-Alive", "X-B"})
	for name, want := range map[string]bool{
		"Connection": true, "Transfer-Encoding": true, "Proxy-Authorization": true, "Te": true,
		"X-A": true, "X-B": true, "X-C": false, "Content-Type": false, "Host": false,
	} {
		if got := hop(name); got != want {
			t.Errorf("hop(%q) = %v, want %v", name, got, want)
		}
	}
	if HopByHop(nil)("X-A") {
		t.Error("X-A is hop-by-hop without a Connection header")
	}
}
