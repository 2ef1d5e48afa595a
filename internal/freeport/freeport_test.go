package freeport

import (
	"net"
	"testing"
)

// TestPort: ports come from below the ephemeral range, are listenable, and
// are not handed out twice.
func TestPort(t *testing.T) {
	seen := map[int]bool{}
	for _, network := range []string{"tcp", "udp", "tcp", "udp"} {
		port, err := Port(network)
		if err != nil {
			t.Fatal(err)
		}
		if port < first || port >= first+count || seen[port] {
			t.Fatalf("port %d: want one in %d-%d not given before", port, first, first+count-1)
		}
		seen[port] = true
	}
	addr, err := TCP()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	_ = l.Close()
}
