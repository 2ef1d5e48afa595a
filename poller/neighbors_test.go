package poller

import (
	"context"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/sim"
)

func pdu(oid string, t gosnmp.Asn1BER, v any) gosnmp.SnmpPDU {
	return gosnmp.SnmpPDU{Name: oid, Type: t, Value: v}
}

// TestParseNeighbors reads lldpRemTable rows of each chassis id subtype,
// a cdpCacheTable row, and the local identity.
func TestParseNeighbors(t *testing.T) {
	rem := func(col, port int) string {
		return oidLLDPRemEntry + "." + strconv.Itoa(col) + ".0." + strconv.Itoa(port) + ".1"
	}
	pdus := []gosnmp.SnmpPDU{
		pdu(oidLLDPLocal+".1.0", gosnmp.Integer, 4),
		pdu(oidLLDPLocal+".2.0", gosnmp.OctetString, []byte{0x00, 0x1b, 0x21, 0x3c, 0x4d, 0x5e}),
		pdu(oidLLDPLocal+".3.0", gosnmp.OctetString, []byte("core1.example.net")),
		pdu(oidLLDPLocPort+".2.1", gosnmp.Integer, 5),
		pdu(oidLLDPLocPort+".3.1", gosnmp.OctetString, []byte("Gi0/1")),
		pdu(oidLLDPLocPort+".2.2", gosnmp.Integer, 3),
		pdu(oidLLDPLocPort+".3.2", gosnmp.OctetString, []byte{1, 2, 3, 4, 5, 6}),
		pdu(oidLLDPLocPort+".4.2", gosnmp.OctetString, []byte("uplink port")),
		// port 1: a MAC chassis id, an interface-name port id
		pdu(rem(4, 1), gosnmp.Integer, 4),
		pdu(rem(5, 1), gosnmp.OctetString, []byte{0x02, 0x00, 0x5e, 0x00, 0x53, 0x01}),
		pdu(rem(6, 1), gosnmp.Integer, 5),
		pdu(rem(7, 1), gosnmp.OctetString, []byte("ge-0/0/1")),
		pdu(rem(8, 1), gosnmp.OctetString, []byte("to core1")),
		pdu(rem(9, 1), gosnmp.OctetString, []byte("edge1")),
		// port 2: a network-address chassis id, a MAC port id
		pdu(rem(4, 2), gosnmp.Integer, 5),
		pdu(rem(5, 2), gosnmp.OctetString, []byte{1, 192, 0, 2, 7}),
		pdu(rem(6, 2), gosnmp.Integer, 3),
		pdu(rem(7, 2), gosnmp.OctetString, []byte{0x02, 0, 0, 0, 0, 9}),
		pdu(rem(8, 2), gosnmp.OctetString, []byte("eth9")),
		// port 3: a local chassis id that is not text
		pdu(rem(4, 3), gosnmp.Integer, 7),
		pdu(rem(5, 3), gosnmp.OctetString, []byte{0xde, 0xad, 0x00}),
		pdu(rem(6, 3), gosnmp.Integer, 7),
		pdu(rem(7, 3), gosnmp.OctetString, []byte("17")),
		// a row with no id at all is skipped
		pdu(rem(6, 4), gosnmp.Integer, 7),
		// CDP on ifIndex 5
		pdu(oidCDPCacheEnt+".3.5.1", gosnmp.Integer, 1),
		pdu(oidCDPCacheEnt+".4.5.1", gosnmp.OctetString, []byte{10, 0, 0, 1}),
		pdu(oidCDPCacheEnt+".6.5.1", gosnmp.OctetString, []byte("sw2.example.net")),
		pdu(oidCDPCacheEnt+".7.5.1", gosnmp.OctetString, []byte("GigabitEthernet0/2")),
		pdu(oidNbrIfName+".5", gosnmp.OctetString, []byte("Gi0/5")),
		pdu(".1.3.6.1.2.1.1.5.0", gosnmp.OctetString, []byte("ignored")),
	}
	got := ParseNeighbors(pdus)
	want := meshmon.NeighborTable{
		Local: meshmon.LocalIdentity{ChassisIDSubtype: meshmon.IDMAC, ChassisID: "00:1b:21:3c:4d:5e", SysName: "core1.example.net"},
		Neighbors: []meshmon.Neighbor{
			{Protocol: "lldp", LocalPort: 1, LocalPortName: "Gi0/1", ChassisIDSubtype: meshmon.IDMAC, ChassisID: "02:00:5e:00:53:01",
				PortIDSubtype: meshmon.IDInterfaceName, PortID: "ge-0/0/1", PortDesc: "to core1", SysName: "edge1"},
			{Protocol: "lldp", LocalPort: 2, LocalPortName: "uplink port", ChassisIDSubtype: meshmon.IDNetworkAddress, ChassisID: "192.0.2.7",
				PortIDSubtype: meshmon.IDMAC, PortID: "02:00:00:00:00:09", PortDesc: "eth9", Address: "192.0.2.7"},
			{Protocol: "lldp", LocalPort: 3, ChassisIDSubtype: meshmon.IDLocal, ChassisID: "dead00",
				PortIDSubtype: meshmon.IDLocal, PortID: "17"},
			{Protocol: "cdp", LocalPort: 5, LocalPortName: "Gi0/5", PortIDSubtype: meshmon.IDInterfaceName,
				PortID: "GigabitEthernet0/2", SysName: "sw2.example.net", Address: "10.0.0.1"},
		},
	}
	if got.Local != want.Local {
		t.Errorf("local = %+v, want %+v", got.Local, want.Local)
	}
	if !slices.Equal(got.Neighbors, want.Neighbors) {
		t.Errorf("neighbours:\n got %+v\nwant %+v", got.Neighbors, want.Neighbors)
	}
	if p := got.Neighbors[1].Port(); p != "eth9" {
		t.Errorf("a MAC port id is named by its description: %q", p)
	}
}

// TestReadNeighborsSimTopology reads every agent of a simulated ring and
// tree over real SNMP (v1, v2c and v3) and maps the links: exactly the
// simulator's. A poll that reads the neighbours in its own session
// (PollNeighbors) reads the same table, twice in a row (the second with
// the v3 engine the first found).
func TestReadNeighborsSimTopology(t *testing.T) {
	for _, topo := range []string{sim.TopologyRing, sim.TopologyTree} {
		t.Run(topo, func(t *testing.T) {
			cfg := sim.DefaultConfig()
			cfg.Agents, cfg.Topology = 7, topo
			s, err := sim.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := s.Start(ctx); err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var devs []meshmon.DeviceNeighbors
			for i, a := range s.Agents() {
				d := a.Device(time.Minute, 2*time.Second, cfg.Community)
				switch i % 3 {
				case 1:
					d.SNMP.Version = meshmon.SNMPv1
				case 2:
					d.SNMP = &meshmon.SNMP{Version: meshmon.SNMPv3, Port: d.SNMP.Port, User: "meshmon",
						AuthProtocol: "SHA", AuthPassword: "meshmon-auth", PrivProtocol: "AES", PrivPassword: "meshmon-priv"}
				}
				nt, err := ReadNeighbors(ctx, d)
				if err != nil {
					t.Fatalf("%s: %v", d.Name, err)
				}
				pr, err := NewSNMPProber(d)
				if err != nil {
					t.Fatal(err)
				}
				for range 2 {
					r := pr.PollNeighbors(ctx)
					if !r.OK || r.NeighborsErr != nil || r.Neighbors == nil || len(r.Interfaces) == 0 {
						t.Fatalf("%s: PollNeighbors: ok %v, %d interfaces, neighbours %v, %v, %v", d.Name, r.OK, len(r.Interfaces),
							r.Neighbors != nil, r.NeighborsErr, r.Err)
					}
					if !reflect.DeepEqual(*r.Neighbors, nt) {
						t.Fatalf("%s: PollNeighbors read %+v; ReadNeighbors %+v", d.Name, *r.Neighbors, nt)
					}
				}
				if r := pr.Poll(ctx); !r.OK || r.Neighbors != nil {
					t.Fatalf("%s: Poll: ok %v, neighbours %+v; want none read", d.Name, r.OK, r.Neighbors)
				}
				devs = append(devs, meshmon.DeviceNeighbors{Device: d.Name, Address: d.Address, Table: nt})
			}
			checkLinks(t, meshmon.Links(devs, nil), s.Links())
		})
	}
}

// TestReadNeighborsNone: an agent that serves neither LLDP-MIB nor
// CISCO-CDP-MIB has no neighbours and no identity, which is no error.
func TestReadNeighborsNone(t *testing.T) {
	cfg := sim.DefaultConfig()
	cfg.Agents = 1
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	nt, err := ReadNeighbors(ctx, s.Agents()[0].Device(time.Minute, 2*time.Second, cfg.Community))
	if err != nil || len(nt.Neighbors) != 0 || nt.Local != (meshmon.LocalIdentity{}) {
		t.Fatalf("ReadNeighbors = %+v, %v; want nothing", nt, err)
	}
}

// checkLinks compares mapped links with the simulator's, in any order
// and orientation.
func checkLinks(t *testing.T, got []meshmon.Link, want []sim.Link) {
	t.Helper()
	key := func(a, ap, b, bp string) string {
		if a > b {
			a, ap, b, bp = b, bp, a, ap
		}
		return a + ":" + ap + "-" + b + ":" + bp
	}
	var g, w []string
	for _, l := range got {
		g = append(g, key(l.A.Device, l.A.Port, l.B.Device, l.B.Port))
		if l.B.Device == sim.UplinkSysName && l.B.Known {
			t.Errorf("uplink %+v is known", l.B)
		}
		if l.B.Device != sim.UplinkSysName && !l.Both {
			t.Errorf("link %+v seen from one end only", l)
		}
	}
	for _, l := range want {
		w = append(w, key(l.A.Device, l.A.Port, l.B.Device, l.B.Port))
	}
	slices.Sort(g)
	slices.Sort(w)
	if !slices.Equal(g, w) {
		t.Fatalf("links:\n got %q\nwant %q", g, w)
	}
}

// TestReadNeighborsSnmpd: a net-snmp snmpd (no LLDP-MIB or CDP without an
// lldpd subagent) answers with no neighbours and no identity, over v2c and
// v3, and no error.
func TestReadNeighborsSnmpd(t *testing.T) {
	a := startAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, s := range []meshmon.SNMP{
		{Version: meshmon.SNMPv2c, Community: testCommunity},
		{Version: meshmon.SNMPv3, User: "authpriv", AuthProtocol: "SHA", AuthPassword: testAuthPass, PrivProtocol: "AES", PrivPassword: testPrivPass},
	} {
		nt, err := ReadNeighbors(ctx, a.device(s))
		if err != nil || len(nt.Neighbors) != 0 || nt.Local != (meshmon.LocalIdentity{}) {
			t.Fatalf("%s: ReadNeighbors = %+v, %v; want nothing", s.Version, nt, err)
		}
	}
}
