package sim

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/gosnmp/gosnmp"
)

// Topologies the simulator's agents can form, as their LLDP and CDP tables
// report it (Config.Topology).
const (
	TopologyNone = ""     // no agent serves LLDP-MIB or CISCO-CDP-MIB
	TopologyRing = "ring" // agent i's eth0 to agent i+1's eth1, the last back to the first
	TopologyTree = "tree" // a binary tree: agent i's eth0 to its parent i/2, eth1 and eth2 to its children 2i and 2i+1
)

// The neighbour outside the simulation that agent 1 is linked to, on its
// eth2 in a ring and its eth0 (it has no parent) in a tree: an unknown
// neighbour for whoever maps the topology.
const (
	UplinkSysName = "isp-gw.example.net"
	UplinkPort    = "xe-0/0/0"
	UplinkChassis = "02:ff:00:00:00:01"
)

// LinkEnd is one end of a simulated link: an agent's device name (or
// UplinkSysName) and its port's name.
type LinkEnd struct {
	Device string
	Port   string
}

// Link is one link of the simulated topology.
type Link struct{ A, B LinkEnd }

// port is one end of a link inside the simulation: agent index (1-based;
// 0 is the uplink) and ifIndex.
type port struct{ agent, ifIndex int }

// topologyLinks returns the links of a topology over n agents, each from
// its lower end's point of view.
func topologyLinks(topology string, n int) [][2]port {
	var out [][2]port
	switch topology {
	case TopologyRing:
		for i := 1; i <= n; i++ {
			out = append(out, [2]port{{i, 1}, {i%n + 1, 2}})
		}
		out = append(out, [2]port{{1, 3}, {0, 0}})
	case TopologyTree:
		for i := 2; i <= n; i++ {
			out = append(out, [2]port{{i / 2, 2 + i%2}, {i, 1}})
		}
		out = append(out, [2]port{{1, 1}, {0, 0}})
	}
	return out
}

// checkTopology is the rule Config.Validate applies to Topology.
func checkTopology(topology string, agents, interfaces int) error {
	switch topology {
	case TopologyNone:
		return nil
	case TopologyRing:
		if agents < 3 {
			return fmt.Errorf("topology ring needs at least 3 agents, not %d", agents)
		}
	case TopologyTree:
		if agents < 2 {
			return fmt.Errorf("topology tree needs at least 2 agents, not %d", agents)
		}
	default:
		return fmt.Errorf("topology %q is unknown; use %q, %q or none", topology, TopologyRing, TopologyTree)
	}
	if interfaces < 3 {
		return fmt.Errorf("topology %s needs at least 3 interfaces per agent, not %d", topology, interfaces)
	}
	return nil
}

// Links returns the links of the simulated topology (none without one),
// each once, with their ends as the agents' device names and port names.
func (s *Sim) Links() []Link {
	var out []Link
	for _, l := range topologyLinks(s.cfg.Topology, len(s.agents)) {
		out = append(out, Link{A: s.linkEnd(l[0]), B: s.linkEnd(l[1])})
	}
	return out
}

func (s *Sim) linkEnd(p port) LinkEnd {
	if p.agent == 0 {
		return LinkEnd{Device: UplinkSysName, Port: UplinkPort}
	}
	return LinkEnd{Device: s.agents[p.agent-1].name, Port: ifName(p.ifIndex)}
}

// SpeaksCDP reports whether the agent serves its neighbours in
// cdpCacheTable instead of lldpRemTable: every third agent (3, 6, ...) does,
// as a Cisco device with LLDP off would. It still serves its own
// lldpLocal identity, which its LLDP neighbours report.
func (a *Agent) SpeaksCDP() bool { return a.index%3 == 0 }

// LLDP-MIB (IEEE 802.1AB) and CISCO-CDP-MIB objects the agents serve.
const (
	oidLLDPLoc      = ".1.0.8802.1.1.2.1.3"
	oidLLDPLocPort  = oidLLDPLoc + ".7.1"
	oidLLDPRemEntry = ".1.0.8802.1.1.2.1.4.1.1"
	oidCDPCacheEnt  = ".1.3.6.1.4.1.9.9.23.1.2.1.1"
)

// chassisID is the agent's lldpLocChassisId and its subtype: a MAC for
// agents 1, 4, 7, ..., a network address (IPv4) for 2, 5, 8, ..., a local
// name for 3, 6, 9, ...
func (a *Agent) chassisID() (subtype int, id []byte) {
	switch a.index % 3 {
	case 1:
		return 4, []byte{0x02, 0x00, 0x5e, byte(a.index >> 16), byte(a.index >> 8), byte(a.index)}
	case 2:
		ip := a.bindAddr.As4()
		return 5, append([]byte{1}, ip[:]...)
	}
	return 7, []byte("chassis-" + a.name)
}

// neighborLeaves are the LLDP and CDP instances of agent a, with their values.
func (s *Sim) neighborLeaves(a *Agent) []instance {
	var out []instance
	add := func(oid string, t gosnmp.Asn1BER, v any) {
		o := mustOID(oid)
		out = append(out, instance{oid: o, name: oidString(o), obj: objStatic, static: &gosnmp.SnmpPDU{Type: t, Value: v}})
	}
	sub, id := a.chassisID()
	add(oidLLDPLoc+".1.0", gosnmp.Integer, sub)
	add(oidLLDPLoc+".2.0", gosnmp.OctetString, id)
	add(oidLLDPLoc+".3.0", gosnmp.OctetString, a.name)
	for i := 1; i <= s.cfg.Interfaces; i++ {
		add(fmt.Sprintf("%s.2.%d", oidLLDPLocPort, i), gosnmp.Integer, 5) // interfaceName
		add(fmt.Sprintf("%s.3.%d", oidLLDPLocPort, i), gosnmp.OctetString, []byte(ifName(i)))
		add(fmt.Sprintf("%s.4.%d", oidLLDPLocPort, i), gosnmp.OctetString, []byte("Simulated Ethernet "+ifName(i)))
	}
	for _, l := range topologyLinks(s.cfg.Topology, len(s.agents)) {
		for end := range 2 {
			local, remote := l[end], l[1-end]
			if local.agent != a.index {
				continue
			}
			if a.SpeaksCDP() {
				s.cdpRow(add, local.ifIndex, remote)
			} else {
				s.lldpRow(add, local.ifIndex, remote)
			}
		}
	}
	slices.SortFunc(out, func(x, y instance) int { return slices.Compare(x.oid, y.oid) })
	return out
}

// lldpRow adds the lldpRemTable row of the neighbour on local port lport
// (time mark 0, remote index 1: one neighbour per port).
func (s *Sim) lldpRow(add func(string, gosnmp.Asn1BER, any), lport int, remote port) {
	col := func(c int) string { return fmt.Sprintf("%s.%d.0.%d.1", oidLLDPRemEntry, c, lport) }
	if remote.agent == 0 {
		add(col(4), gosnmp.Integer, 4)
		add(col(5), gosnmp.OctetString, []byte{0x02, 0xff, 0, 0, 0, 1})
		add(col(6), gosnmp.Integer, 5)
		add(col(7), gosnmp.OctetString, []byte(UplinkPort))
		add(col(8), gosnmp.OctetString, []byte("to customer"))
		add(col(9), gosnmp.OctetString, []byte(UplinkSysName))
		return
	}
	r := s.agents[remote.agent-1]
	sub, id := r.chassisID()
	add(col(4), gosnmp.Integer, sub)
	add(col(5), gosnmp.OctetString, id)
	add(col(6), gosnmp.Integer, 5)
	add(col(7), gosnmp.OctetString, []byte(ifName(remote.ifIndex)))
	add(col(8), gosnmp.OctetString, []byte("Simulated Ethernet "+ifName(remote.ifIndex)))
	add(col(9), gosnmp.OctetString, []byte(r.name))
}

// cdpRow adds the cdpCacheTable row of the neighbour on ifIndex lport.
func (s *Sim) cdpRow(add func(string, gosnmp.Asn1BER, any), lport int, remote port) {
	col := func(c int) string { return fmt.Sprintf("%s.%d.%d.1", oidCDPCacheEnt, c, lport) }
	name, rport, addr := UplinkSysName, UplinkPort, netip.MustParseAddr("192.0.2.1")
	if remote.agent > 0 {
		r := s.agents[remote.agent-1]
		name, rport, addr = r.name, ifName(remote.ifIndex), r.bindAddr
	}
	ip := addr.As4()
	add(col(3), gosnmp.Integer, 1) // ip
	add(col(4), gosnmp.OctetString, ip[:])
	add(col(5), gosnmp.OctetString, []byte("meshmon simulated device"))
	add(col(6), gosnmp.OctetString, []byte(name))
	add(col(7), gosnmp.OctetString, []byte(rport))
	add(col(8), gosnmp.OctetString, []byte("meshmon-sim"))
}
