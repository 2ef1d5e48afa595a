package meshmon

import (
	"bytes"
	"strings"
	"testing"
)

// TestLinks: a link reported from both ends is one link, whichever
// protocol each end used; neighbours are matched by chassis id, sys name
// (case and domain aside) or address; what matches no device is an
// unknown end.
func TestLinks(t *testing.T) {
	core := DeviceNeighbors{Device: "core", Table: NeighborTable{
		Local: LocalIdentity{ChassisIDSubtype: IDMAC, ChassisID: "02:00:00:00:00:01", SysName: "core.example.net"},
		Neighbors: []Neighbor{
			{Protocol: ProtocolLLDP, LocalPort: 1, LocalPortName: "eth0", ChassisIDSubtype: IDLocal, ChassisID: "edge-chassis",
				PortIDSubtype: IDInterfaceName, PortID: "eth3", SysName: "whatever"},
			{Protocol: ProtocolLLDP, LocalPort: 2, LocalPortName: "eth1", ChassisIDSubtype: IDMAC, ChassisID: "02:ff:00:00:00:01",
				PortIDSubtype: IDInterfaceName, PortID: "xe-0/0/0", SysName: "isp-gw"},
			{Protocol: ProtocolLLDP, LocalPort: 3, LocalPortName: "eth2", ChassisIDSubtype: IDMAC, ChassisID: "02:00:00:00:00:01",
				PortIDSubtype: IDInterfaceName, PortID: "eth2"}, // itself: a loop
		},
	}}
	edge := DeviceNeighbors{Device: "edge", Table: NeighborTable{
		Local: LocalIdentity{ChassisIDSubtype: IDLocal, ChassisID: "edge-chassis", SysName: "EDGE"},
		Neighbors: []Neighbor{
			{Protocol: ProtocolCDP, LocalPort: 4, LocalPortName: "eth3", SysName: "CORE.example.net", PortID: "eth0"},
			{Protocol: ProtocolCDP, LocalPort: 5, LocalPortName: "eth4", SysName: "printer", PortID: "p1", Address: "192.0.2.9"},
			{Protocol: ProtocolCDP, LocalPort: 6, LocalPortName: "eth5", SysName: "unknown-box", PortID: "1/1", Address: "192.0.2.50"},
		},
	}}
	got := Links([]DeviceNeighbors{core, edge}, []Device{{Name: "lab-printer", Address: "192.0.2.9"}})
	want := []Link{
		{A: LinkEnd{Device: "core", Known: true, Port: "eth0"}, B: LinkEnd{Device: "edge", Known: true, Port: "eth3"},
			Protocols: []string{ProtocolCDP, ProtocolLLDP}, Both: true},
		{A: LinkEnd{Device: "core", Known: true, Port: "eth1"},
			B: LinkEnd{Device: "isp-gw", Port: "xe-0/0/0", ChassisID: "02:ff:00:00:00:01"}, Protocols: []string{ProtocolLLDP}},
		{A: LinkEnd{Device: "edge", Known: true, Port: "eth4"}, B: LinkEnd{Device: "lab-printer", Known: true, Port: "p1"},
			Protocols: []string{ProtocolCDP}},
		{A: LinkEnd{Device: "edge", Known: true, Port: "eth5"},
			B: LinkEnd{Device: "unknown-box", Port: "1/1", Address: "192.0.2.50"}, Protocols: []string{ProtocolCDP}},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d links, want %d:\n%+v", len(got), len(want), got)
	}
	for i := range want {
		if !sameLink(got[i], want[i]) {
			t.Errorf("link %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
	var b bytes.Buffer
	if err := WriteLinks(&b, got); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		"core eth0 -- edge eth3 (cdp+lldp, both ends)",
		"core eth1 -- isp-gw xe-0/0/0 (unknown chassis 02:ff:00:00:00:01) (lldp, one end)",
		"edge eth5 -- unknown-box 1/1 (unknown) (cdp, one end)",
	} {
		if !strings.Contains(b.String(), line+"\n") {
			t.Errorf("output lacks %q:\n%s", line, b.String())
		}
	}
}

func sameLink(a, b Link) bool {
	return a.A == b.A && a.B == b.B && a.Both == b.Both && strings.Join(a.Protocols, ",") == strings.Join(b.Protocols, ",")
}

func TestWriteLinksNone(t *testing.T) {
	var b bytes.Buffer
	if err := WriteLinks(&b, nil); err != nil || b.String() != "no links\n" {
		t.Fatalf("WriteLinks(nil) = %q, %v", b.String(), err)
	}
}

// TestLinksPortNamedDifferently: each end reported the link, naming the
// other's port its own way; it is still one link, each end with its own
// device's name for its port. Two parallel links whose names match on
// one side stay two.
func TestLinksPortNamedDifferently(t *testing.T) {
	a := DeviceNeighbors{Device: "a", Table: NeighborTable{Local: LocalIdentity{SysName: "a"}, Neighbors: []Neighbor{
		{Protocol: ProtocolLLDP, LocalPortName: "Gi0/1", SysName: "b", PortIDSubtype: IDInterfaceName, PortID: "Te1/1"},
		{Protocol: ProtocolLLDP, LocalPortName: "Gi0/2", SysName: "b", PortIDSubtype: IDInterfaceName, PortID: "Te1/2"},
		{Protocol: ProtocolLLDP, LocalPortName: "Gi0/9", SysName: "c", PortIDSubtype: IDInterfaceName, PortID: "p9"},
	}}}
	b := DeviceNeighbors{Device: "b", Table: NeighborTable{Local: LocalIdentity{SysName: "b"}, Neighbors: []Neighbor{
		{Protocol: ProtocolCDP, LocalPortName: "TenGigabitEthernet1/1", SysName: "a", PortID: "Gi0/1"},
		{Protocol: ProtocolCDP, LocalPortName: "TenGigabitEthernet1/2", SysName: "a", PortID: "Gi0/2"},
	}}}
	c := DeviceNeighbors{Device: "c", Table: NeighborTable{Local: LocalIdentity{SysName: "c"}, Neighbors: []Neighbor{
		{Protocol: ProtocolCDP, LocalPortName: "port9", SysName: "a", PortID: "GigabitEthernet0/9"},
	}}}
	got := Links([]DeviceNeighbors{a, b, c}, nil)
	want := []Link{
		{A: LinkEnd{Device: "a", Known: true, Port: "Gi0/1"}, B: LinkEnd{Device: "b", Known: true, Port: "TenGigabitEthernet1/1"},
			Protocols: []string{ProtocolCDP, ProtocolLLDP}, Both: true},
		{A: LinkEnd{Device: "a", Known: true, Port: "Gi0/2"}, B: LinkEnd{Device: "b", Known: true, Port: "TenGigabitEthernet1/2"},
			Protocols: []string{ProtocolCDP, ProtocolLLDP}, Both: true},
		{A: LinkEnd{Device: "a", Known: true, Port: "Gi0/9"}, B: LinkEnd{Device: "c", Known: true, Port: "port9"},
			Protocols: []string{ProtocolCDP, ProtocolLLDP}, Both: true},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d links, want %d:\n%+v", len(got), len(want), got)
	}
	for i := range want {
		if !sameLink(got[i], want[i]) {
			t.Errorf("link %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
}
