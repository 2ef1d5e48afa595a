package poller

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/gosnmp/gosnmp"

	"github.com/meshmon/meshmon"
)

// LLDP-MIB (IEEE 802.1AB-2005) and CISCO-CDP-MIB subtrees ReadNeighbors
// walks, and ifName for the names of CDP's local ifIndexes.
const (
	oidLLDPLocal    = ".1.0.8802.1.1.2.1.3"     // lldpLocalSystemData
	oidLLDPLocPort  = ".1.0.8802.1.1.2.1.3.7.1" // lldpLocPortEntry
	oidLLDPRemEntry = ".1.0.8802.1.1.2.1.4.1.1" // lldpRemEntry
	oidCDPCacheEnt  = ".1.3.6.1.4.1.9.9.23.1.2.1.1"
	oidNbrIfName    = "." + oidIfName
)

// ReadNeighbors reads the link-layer neighbours of d over SNMP with d's
// settings: its own LLDP identity, lldpRemTable and cdpCacheTable. A device
// that serves neither MIB has no neighbours, which is no error. It fails
// with an error wrapping ErrSNMPConfig for unusable settings, and with the
// SNMP error (timeout, authentication, ...) otherwise. Discovery calls it
// too.
func ReadNeighbors(ctx context.Context, d meshmon.Device) (meshmon.NeighborTable, error) {
	p, err := NewSNMPProber(d)
	if err != nil {
		return meshmon.NeighborTable{}, err
	}
	c, err := p.newClient()
	if err != nil {
		return meshmon.NeighborTable{}, err
	}
	c.Context = ctx
	if err := c.Connect(); err != nil {
		return meshmon.NeighborTable{}, fmt.Errorf("connect %s: %w", net.JoinHostPort(c.Target, strconv.Itoa(int(c.Port))), err)
	}
	defer c.Conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.Conn.Close() })
	defer stop()
	nt, err := walkNeighbors(c)
	if err != nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	return nt, err
}

// walkNeighbors reads the neighbour table with c, a connected client: the
// walks of ReadNeighbors, and of a poll that reads the neighbours in its
// own session (SNMPProber.PollNeighbors).
func walkNeighbors(c *gosnmp.GoSNMP) (meshmon.NeighborTable, error) {
	var pdus []gosnmp.SnmpPDU
	keep := func(v gosnmp.SnmpPDU) error { pdus = append(pdus, v); return nil }
	for _, root := range []string{oidLLDPLocal, oidLLDPRemEntry, oidCDPCacheEnt, oidNbrIfName} {
		var err error
		if c.Version == gosnmp.Version1 {
			err = c.Walk(root, keep)
		} else {
			err = c.BulkWalk(root, keep)
		}
		if err != nil {
			return meshmon.NeighborTable{}, fmt.Errorf("walk %s: %w", root, err)
		}
	}
	return ParseNeighbors(pdus), nil
}

// ParseNeighbors builds a neighbour table from the varbinds of walks of
// lldpLocalSystemData, lldpRemEntry, cdpCacheEntry and ifName; anything
// else is ignored, and so is a row without a neighbour id.
func ParseNeighbors(pdus []gosnmp.SnmpPDU) meshmon.NeighborTable {
	var t meshmon.NeighborTable
	locSub, ifNames := 0, map[int]string{}
	locPorts := map[int]*[3]gosnmp.SnmpPDU{} // subtype, id, desc
	lldp := map[[3]int]map[int]gosnmp.SnmpPDU{}
	cdp := map[[2]int]map[int]gosnmp.SnmpPDU{}
	for _, v := range pdus {
		name := "." + strings.TrimPrefix(v.Name, ".")
		switch {
		case name == oidLLDPLocal+".1.0":
			locSub = int(toInt64(v.Value))
		case name == oidLLDPLocal+".2.0":
			t.Local.ChassisID = string(octets(v))
		case name == oidLLDPLocal+".3.0":
			t.Local.SysName = string(octets(v))
		case strings.HasPrefix(name, oidLLDPLocPort+"."):
			if sub, ok := subOID(name, oidLLDPLocPort, 2); ok && sub[0] >= 2 && sub[0] <= 4 {
				if locPorts[sub[1]] == nil {
					locPorts[sub[1]] = &[3]gosnmp.SnmpPDU{}
				}
				locPorts[sub[1]][sub[0]-2] = v
			}
		case strings.HasPrefix(name, oidLLDPRemEntry+"."):
			if sub, ok := subOID(name, oidLLDPRemEntry, 4); ok {
				k := [3]int{sub[1], sub[2], sub[3]}
				if lldp[k] == nil {
					lldp[k] = map[int]gosnmp.SnmpPDU{}
				}
				lldp[k][sub[0]] = v
			}
		case strings.HasPrefix(name, oidCDPCacheEnt+"."):
			if sub, ok := subOID(name, oidCDPCacheEnt, 3); ok {
				k := [2]int{sub[1], sub[2]}
				if cdp[k] == nil {
					cdp[k] = map[int]gosnmp.SnmpPDU{}
				}
				cdp[k][sub[0]] = v
			}
		case strings.HasPrefix(name, oidNbrIfName+"."):
			if sub, ok := subOID(name, oidNbrIfName, 0); ok && len(sub) == 1 {
				ifNames[sub[0]] = pduString(v)
			}
		}
	}
	if t.Local.ChassisID != "" {
		t.Local.ChassisIDSubtype, t.Local.ChassisID = renderID(chassisSubtypes, locSub, []byte(t.Local.ChassisID))
	}
	portName := func(num int) string {
		if lp := locPorts[num]; lp != nil {
			if s := portIDSubtype(lp[0]); (s == meshmon.IDInterfaceName || s == meshmon.IDInterfaceAlias) && len(octets(lp[1])) > 0 {
				return string(octets(lp[1]))
			}
			if d := octets(lp[2]); len(d) > 0 {
				return string(d)
			}
		}
		return ifNames[num]
	}
	t.Neighbors = append(lldpNeighbors(lldp, portName), cdpNeighbors(cdp, ifNames)...)
	slices.SortStableFunc(t.Neighbors, func(a, b meshmon.Neighbor) int { return a.LocalPort - b.LocalPort })
	return t
}

func lldpNeighbors(rows map[[3]int]map[int]gosnmp.SnmpPDU, portName func(int) string) []meshmon.Neighbor {
	keys := sortedKeys(rows, func(a, b [3]int) int { return slices.Compare(a[:], b[:]) })
	var out []meshmon.Neighbor
	for _, k := range keys {
		r := rows[k]
		n := meshmon.Neighbor{Protocol: meshmon.ProtocolLLDP, LocalPort: k[1], LocalPortName: portName(k[1])}
		n.ChassisIDSubtype, n.ChassisID = renderID(chassisSubtypes, int(toInt64(r[4].Value)), octets(r[5]))
		n.PortIDSubtype, n.PortID = renderID(portSubtypes, int(toInt64(r[6].Value)), octets(r[7]))
		n.PortDesc, n.SysName = string(octets(r[8])), string(octets(r[9]))
		if n.ChassisIDSubtype == meshmon.IDNetworkAddress {
			n.Address = n.ChassisID
		}
		if n.ChassisID == "" && n.SysName == "" {
			continue
		}
		out = append(out, n)
	}
	return out
}

func cdpNeighbors(rows map[[2]int]map[int]gosnmp.SnmpPDU, ifNames map[int]string) []meshmon.Neighbor {
	keys := sortedKeys(rows, func(a, b [2]int) int { return slices.Compare(a[:], b[:]) })
	var out []meshmon.Neighbor
	for _, k := range keys {
		r := rows[k]
		n := meshmon.Neighbor{Protocol: meshmon.ProtocolCDP, LocalPort: k[0], LocalPortName: ifNames[k[0]],
			SysName: string(octets(r[6])), PortIDSubtype: meshmon.IDInterfaceName, PortID: string(octets(r[7]))}
		if n.SysName == "" {
			continue
		}
		// cdpCacheAddressType 1 is ip (CiscoNetworkProtocol); the address
		// is then its 4 octets.
		if a := octets(r[4]); toInt64(r[3].Value) == 1 && len(a) == 4 {
			n.Address = netip.AddrFrom4([4]byte(a)).String()
		}
		out = append(out, n)
	}
	return out
}

var (
	chassisSubtypes = map[int]string{1: meshmon.IDChassisComponent, 2: meshmon.IDInterfaceAlias, 3: meshmon.IDPortComponent,
		4: meshmon.IDMAC, 5: meshmon.IDNetworkAddress, 6: meshmon.IDInterfaceName, 7: meshmon.IDLocal}
	portSubtypes = map[int]string{1: meshmon.IDInterfaceAlias, 2: meshmon.IDPortComponent, 3: meshmon.IDMAC,
		4: meshmon.IDNetworkAddress, 5: meshmon.IDInterfaceName, 6: meshmon.IDAgentCircuitID, 7: meshmon.IDLocal}
)

func portIDSubtype(v gosnmp.SnmpPDU) string { return portSubtypes[int(toInt64(v.Value))] }

// renderID names an id subtype and renders the id: a MAC as
// 02:00:5e:00:53:01, a network address (IANA family 1 or 2, then the
// address) as text, others as text when printable and hex when not.
func renderID(subtypes map[int]string, subtype int, id []byte) (string, string) {
	name := subtypes[subtype]
	if name == "" && subtype != 0 {
		name = strconv.Itoa(subtype)
	}
	switch {
	case len(id) == 0:
		return name, ""
	case name == meshmon.IDMAC && len(id) == 6:
		return name, net.HardwareAddr(id).String()
	case name == meshmon.IDNetworkAddress && len(id) == 5 && id[0] == 1:
		return name, netip.AddrFrom4([4]byte(id[1:])).String()
	case name == meshmon.IDNetworkAddress && len(id) == 17 && id[0] == 2:
		return name, netip.AddrFrom16([16]byte(id[1:])).String()
	}
	for _, r := range string(id) {
		if r == unicode.ReplacementChar || !unicode.IsPrint(r) {
			return name, hex.EncodeToString(id)
		}
	}
	return name, string(id)
}

// octets is an OctetString's bytes (nil for anything else).
func octets(v gosnmp.SnmpPDU) []byte {
	switch b := v.Value.(type) {
	case []byte:
		return b
	case string:
		if v.Type == gosnmp.OctetString {
			return []byte(b)
		}
	}
	return nil
}

// subOID returns the sub-identifiers of name after prefix, the column
// first: want of them (0: any number, at least one).
func subOID(name, prefix string, want int) ([]int, bool) {
	parts := strings.Split(strings.TrimPrefix(name, prefix+"."), ".")
	if want > 0 && len(parts) != want {
		return nil, false
	}
	out := make([]int, len(parts))
	for i, s := range parts {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return nil, false
		}
		out[i] = n
	}
	return out, true
}

func sortedKeys[K comparable, V any](m map[K]V, cmp func(a, b K) int) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, cmp)
	return keys
}
