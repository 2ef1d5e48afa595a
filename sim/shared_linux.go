package sim

import (
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/net/ipv4"
)

// sharedSupported: Linux reports each datagram's destination address
// (IP_PKTINFO) and sends from any local address given per datagram.
const sharedSupported = true

// sharedConn is the one UDP socket every agent of a Sim shares
// (Config.SharedSocket): bound to the wildcard address, it learns each
// request's destination address, which names the agent, and answers from
// that address, so a manager that connected its socket to the agent gets
// the answer.
type sharedConn struct {
	conn *net.UDPConn
	pc   *ipv4.PacketConn
}

// listenShared binds the wildcard address on port (0: the kernel chooses).
func listenShared(port int) (*sharedConn, error) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero, Port: port})
	if err != nil {
		return nil, err
	}
	// Every agent's requests queue here; ask for more than the default
	// (the kernel caps it at net.core.rmem_max).
	_ = conn.SetReadBuffer(4 << 20)
	pc := ipv4.NewPacketConn(conn)
	if err := pc.SetControlMessage(ipv4.FlagDst, true); err != nil {
		conn.Close()
		return nil, fmt.Errorf("ask for destination addresses (IP_PKTINFO): %w", err)
	}
	return &sharedConn{conn: conn, pc: pc}, nil
}

func (c *sharedConn) port() uint16 { return c.conn.LocalAddr().(*net.UDPAddr).AddrPort().Port() }

// read reads one datagram: its length, sender and destination address.
// The destination is invalid if the kernel did not report it.
func (c *sharedConn) read(buf []byte) (n int, from netip.AddrPort, dst netip.Addr, err error) {
	n, cm, src, err := c.pc.ReadFrom(buf)
	if err != nil {
		return 0, netip.AddrPort{}, netip.Addr{}, err
	}
	if ua, ok := src.(*net.UDPAddr); ok {
		from = ua.AddrPort()
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	}
	if cm != nil {
		dst, _ = netip.AddrFromSlice(cm.Dst)
		dst = dst.Unmap()
	}
	return n, from, dst, nil
}

// writeFrom sends b to `to` with source address src (one of the agents').
func (c *sharedConn) writeFrom(b []byte, src netip.Addr, to netip.AddrPort) error {
	s4 := src.As4()
	_, err := c.pc.WriteTo(b, &ipv4.ControlMessage{Src: net.IP(s4[:])}, net.UDPAddrFromAddrPort(to))
	return err
}

func (c *sharedConn) Close() error { return c.conn.Close() }
