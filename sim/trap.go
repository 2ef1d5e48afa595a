package sim

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"github.com/gosnmp/gosnmp"
	"github.com/meshmon/meshmon"
)

type trapKind uint8

const (
	trapLinkDown trapKind = iota
	trapLinkUp
	trapColdStart
)

// SendTrap sends a linkDown trap for the agent's first interface that is
// down, or a linkUp trap for interface 1 when all are up. See SendLinkTrap.
func (a *Agent) SendTrap(ctx context.Context, target, version string) error {
	ifIndex := 1
	a.mu.Lock()
	for i, f := range a.ifs {
		if !f.up {
			ifIndex = i + 1
			break
		}
	}
	a.mu.Unlock()
	return a.SendLinkTrap(ctx, target, version, ifIndex)
}

// SendLinkTrap sends a linkDown or linkUp trap (after the interface's
// current ifOperStatus) for ifIndex to target (host:port), in version "1"
// or "2c" with the Sim's community, or "3" as the Sim's first v3 user (at
// its security level; the agent is the authoritative engine of its traps).
// It goes out from the agent's address and port, so the receiver sees the agent's
// address as the source. v2c and v3 traps carry sysUpTime.0 and
// snmpTrapOID.0 first, then ifIndex, ifAdminStatus and ifOperStatus; v1
// traps carry generic-trap linkDown(2) or linkUp(3).
// It returns ErrAgentDown while the agent is down, ErrUnknownInterface and
// ErrBadTrapTarget for bad arguments, ErrNotStarted before Start.
func (a *Agent) SendLinkTrap(ctx context.Context, target, version string, ifIndex int) error {
	up, err := a.IfOper(ifIndex)
	if err != nil {
		return fmt.Errorf("send trap: %w", err)
	}
	kind := trapLinkDown
	if up {
		kind = trapLinkUp
	}
	return a.sendTrap(ctx, target, version, kind, ifIndex)
}

func (a *Agent) sendTrap(ctx context.Context, target, version string, kind trapKind, ifIndex int) error {
	if !a.addr.IsValid() {
		return fmt.Errorf("send trap from %s: %w", a.name, ErrNotStarted)
	}
	if a.down.Load() {
		return fmt.Errorf("send trap from %s: %w", a.name, ErrAgentDown)
	}
	to, err := resolveTarget(ctx, target)
	if err != nil {
		return fmt.Errorf("send trap from %s: %w", a.name, err)
	}
	st := a.snapshot()
	pkt := &gosnmp.SnmpPacket{Community: a.sim.cfg.Community}
	var vars []gosnmp.SnmpPDU
	if kind != trapColdStart {
		oper := 1
		if !st.ifs[ifIndex-1].up {
			oper = 2
		}
		idx := strconv.Itoa(ifIndex)
		vars = []gosnmp.SnmpPDU{
			{Name: OIDIfEntry + ".1." + idx, Type: gosnmp.Integer, Value: ifIndex},
			{Name: OIDIfEntry + ".7." + idx, Type: gosnmp.Integer, Value: 1},
			{Name: OIDIfEntry + ".8." + idx, Type: gosnmp.Integer, Value: oper},
		}
	}
	switch version {
	case meshmon.SNMPv1:
		pkt.Version = gosnmp.Version1
		pkt.PDUType = gosnmp.Trap
		pkt.Enterprise = SimSysObjectID
		pkt.AgentAddress = a.addr.Addr().String()
		pkt.GenericTrap = map[trapKind]int{trapColdStart: 0, trapLinkDown: 2, trapLinkUp: 3}[kind]
		pkt.Timestamp = uint(st.uptime)
		pkt.Variables = vars
	case meshmon.SNMPv2c:
		oid := map[trapKind]string{trapColdStart: OIDColdStart, trapLinkDown: OIDLinkDown, trapLinkUp: OIDLinkUp}[kind]
		pkt.Version = gosnmp.Version2c
		pkt.PDUType = gosnmp.SNMPv2Trap
		pkt.RequestID = uint32(a.salt.Add(1) & 0x7fffffff)
		pkt.Variables = append([]gosnmp.SnmpPDU{
			{Name: OIDSysUpTime, Type: gosnmp.TimeTicks, Value: st.uptime},
			{Name: OIDSnmpTrapOID, Type: gosnmp.ObjectIdentifier, Value: oid},
		}, vars...)
	case meshmon.SNMPv3:
		// The agent is the authoritative engine of its traps: its engine ID,
		// boots and time, the Sim's first user's keys localized to it.
		if len(a.keys) == 0 {
			return fmt.Errorf("send trap from %s: %w: version 3 needs a v3 user (serve version 3)", a.name, ErrBadTrapTarget)
		}
		u, keys := &a.sim.users[0], a.keys[0]
		boots, etime := a.engineClock()
		oid := map[trapKind]string{trapColdStart: OIDColdStart, trapLinkDown: OIDLinkDown, trapLinkUp: OIDLinkUp}[kind]
		pkt.Community = ""
		pkt.Version = gosnmp.Version3
		pkt.MsgFlags = u.level
		pkt.SecurityModel = gosnmp.UserSecurityModel
		pkt.SecurityParameters = a.securityParameters(u, &keys, u.level, boots, etime)
		pkt.MsgID = uint32(a.salt.Add(1) & 0x7fffffff)
		pkt.MsgMaxSize = maxResponseSize
		pkt.ContextEngineID = a.engineID
		pkt.PDUType = gosnmp.SNMPv2Trap
		pkt.RequestID = uint32(a.salt.Add(1) & 0x7fffffff)
		pkt.Variables = append([]gosnmp.SnmpPDU{
			{Name: OIDSysUpTime, Type: gosnmp.TimeTicks, Value: st.uptime},
			{Name: OIDSnmpTrapOID, Type: gosnmp.ObjectIdentifier, Value: oid},
		}, vars...)
	default:
		return fmt.Errorf("send trap from %s: %w: version %q; use %s, %s or %s", a.name, ErrBadTrapTarget, version, meshmon.SNMPv1, meshmon.SNMPv2c, meshmon.SNMPv3)
	}
	out, err := pkt.MarshalMsg()
	if err != nil {
		return fmt.Errorf("send trap from %s: marshal: %w", a.name, err)
	}
	if err := a.send(out, to); err != nil {
		return fmt.Errorf("send trap from %s to %s: %w", a.name, to, err)
	}
	return nil
}

// resolveTarget turns host:port into an IPv4 address and port.
func resolveTarget(ctx context.Context, target string) (netip.AddrPort, error) {
	host, port, err := splitTarget(target)
	if err != nil {
		return netip.AddrPort{}, err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return netip.AddrPort{}, fmt.Errorf("%w: port %q of %q must be 1 to 65535", ErrBadTrapTarget, port, target)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if !ip.Unmap().Is4() {
			return netip.AddrPort{}, fmt.Errorf("%w: %q is not IPv4; agents send from IPv4 sockets", ErrBadTrapTarget, target)
		}
		return netip.AddrPortFrom(ip.Unmap(), uint16(p)), nil
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip4", host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%w: resolve %q: %w", ErrBadTrapTarget, host, err)
	}
	if len(ips) == 0 {
		return netip.AddrPort{}, fmt.Errorf("%w: %q has no IPv4 address", ErrBadTrapTarget, host)
	}
	return netip.AddrPortFrom(ips[0].Unmap(), uint16(p)), nil
}
