//go:build unix

package freeport

import "testing"

// TestPortReservedAcrossProcesses: a port handed out stays reserved while
// this process lives, so that another process using this package skips it.
// A second open of its reservation file stands in for that process: flock
// locks belong to the open file, so it is refused as another process's
// would be.
func TestPortReservedAcrossProcesses(t *testing.T) {
	for _, network := range []string{"tcp", "udp"} {
		port, err := Port(network)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := reserve(network, port); ok {
			t.Errorf("%s port %d: reserved again while this process holds it", network, port)
		}
	}
}
