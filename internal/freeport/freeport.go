// Package freeport hands out loopback ports that nobody listens on, from
// below Linux's ephemeral range (32768-60999), for tests and benchmarks
// that must name a peer's ports before it starts (routes, leaf links).
//
// A port from the ephemeral range (what listening on port 0 returns) can
// be taken, between asking for it and the peer listening on it, as the
// source port of a connection another peer dials: a route or a leaf link.
// Seen: "listen tcp 127.0.0.1:40129: bind: address already in use" for the
// third member of a cluster started side by side.
//
// Below that range, a port can still be taken by another process that
// uses this package: several test binaries run side by side (go test runs
// packages in parallel, and several developers share a machine), each
// probing the same range. A port probed free by two of them is bound by
// the first to start its peer, and the other fails: seen, "listen tcp
// 127.0.0.1:29380: bind: address already in use" for a site cluster
// member's route port while other suites ran. So a port handed out is
// also reserved across processes: an exclusive flock on a file named for
// it (in the system's temp dir), held until the process ends, which the
// kernel releases however it ends. Another process skips a port reserved
// so.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
)

const (
	first = 20000
	count = 12000
)

var (
	mu    sync.Mutex
	given = map[int]bool{} // never handed out twice in one process
)

// Port returns a port on 127.0.0.1 that is free for network ("tcp" or
// "udp") and that this process has not been given before.
func Port(network string) (int, error) {
	mu.Lock()
	defer mu.Unlock()
	for range 1000 {
		port := first + rand.IntN(count)
		if given[port] {
			continue
		}
		release, ok := reserve(network, port)
		if !ok {
			continue // another process has it
		}
		var err error
		if network == "udp" {
			var c net.PacketConn
			if c, err = net.ListenPacket("udp", Addr(port)); err == nil {
				_ = c.Close()
			}
		} else {
			var l net.Listener
			if l, err = net.Listen("tcp", Addr(port)); err == nil {
				_ = l.Close()
			}
		}
		if err == nil {
			given[port] = true
			return port, nil
		}
		release()
	}
	return 0, fmt.Errorf("no free %s port in %d-%d on 127.0.0.1", network, first, first+count-1)
}

// TCP returns "127.0.0.1:PORT" with a free TCP port.
func TCP() (string, error) {
	port, err := Port("tcp")
	if err != nil {
		return "", err
	}
	return Addr(port), nil
}

// Addr is port on 127.0.0.1.
func Addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }
