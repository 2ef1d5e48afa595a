//go:build !linux

package sim

import (
	"errors"
	"net/netip"
)

// sharedSupported: elsewhere the agents keep a socket each
// (Config.SharedSocket is ignored); the x/net control messages that carry
// a datagram's destination and source address differ by OS, and only Linux
// makes all of 127.0.0.0/8 local anyway.
const sharedSupported = false

type sharedConn struct{}

var errNoShared = errors.New("a shared socket needs Linux")

func listenShared(int) (*sharedConn, error) { return nil, errNoShared }

func (c *sharedConn) port() uint16 { return 0 }

func (c *sharedConn) read([]byte) (int, netip.AddrPort, netip.Addr, error) {
	return 0, netip.AddrPort{}, netip.Addr{}, errNoShared
}

func (c *sharedConn) writeFrom([]byte, netip.Addr, netip.AddrPort) error { return errNoShared }

func (c *sharedConn) Close() error { return nil }
