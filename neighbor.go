package meshmon

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// CheckLLDP is the check whose samples (on mx.<site>.<device>.lldp) carry a
// device's link-layer neighbours, read from LLDP-MIB and CISCO-CDP-MIB.
const CheckLLDP = "lldp"

// The neighbour protocols.
const (
	ProtocolLLDP = "lldp"
	ProtocolCDP  = "cdp"
)

// Chassis and port id subtypes, as a Neighbor names them (LLDP-MIB
// LldpChassisIdSubtype and LldpPortIdSubtype; CDP neighbours have a
// device id, "local").
const (
	IDChassisComponent = "chassis_component"
	IDInterfaceAlias   = "interface_alias"
	IDPortComponent    = "port_component"
	IDMAC              = "mac"
	IDNetworkAddress   = "network_address"
	IDInterfaceName    = "interface_name"
	IDAgentCircuitID   = "agent_circuit_id"
	IDLocal            = "local"
)

// Neighbor is one link-layer neighbour a device reports on one of its ports:
// a row of lldpRemTable or cdpCacheTable.
type Neighbor struct {
	Protocol string `json:"protocol"` // ProtocolLLDP or ProtocolCDP
	// LocalPort is the port of the reporting device: lldpRemLocalPortNum
	// (an lldpLocPortNum) or cdpCacheIfIndex (an ifIndex).
	LocalPort     int    `json:"local_port"`
	LocalPortName string `json:"local_port_name,omitempty"`
	// ChassisID identifies the neighbour: a MAC as 02:00:5e:00:53:01, a
	// network address as its text form, anything else as text when
	// printable and as hex otherwise.
	ChassisIDSubtype string `json:"chassis_id_subtype,omitempty"`
	ChassisID        string `json:"chassis_id,omitempty"`
	PortIDSubtype    string `json:"port_id_subtype,omitempty"`
	PortID           string `json:"port_id,omitempty"`
	PortDesc         string `json:"port_desc,omitempty"`
	SysName          string `json:"sys_name,omitempty"`
	// Address is the neighbour's management address, where it says one
	// (CDP's cdpCacheAddress, a network-address chassis id).
	Address string `json:"address,omitempty"`
}

// Port is the neighbour's port as it is best named: its description when
// the id is a MAC or opaque, else its id.
func (n Neighbor) Port() string {
	if n.PortID == "" || (n.PortDesc != "" && n.PortIDSubtype != IDInterfaceName && n.PortIDSubtype != IDInterfaceAlias) {
		return n.PortDesc
	}
	return n.PortID
}

// LocalIdentity is how a device names itself to its neighbours
// (lldpLocChassisId, lldpLocSysName). The lldp sample carries it in its
// labels (LabelChassisID, LabelChassisIDSubtype, LabelSysName).
type LocalIdentity struct {
	ChassisIDSubtype string `json:"chassis_id_subtype,omitempty"`
	ChassisID        string `json:"chassis_id,omitempty"`
	SysName          string `json:"sys_name,omitempty"`
}

// Labels of an lldp sample.
const (
	LabelChassisID        = "chassis_id"
	LabelChassisIDSubtype = "chassis_id_subtype"
	LabelSysName          = "sys_name"
)

// NeighborTable is what a device reports about its links at one time.
type NeighborTable struct {
	Local     LocalIdentity
	Neighbors []Neighbor
}

// LinkEnd is one end of a link: an inventory device (Known) or a neighbour
// that is none, named by what it reported.
type LinkEnd struct {
	Device string `json:"device"` // the inventory name, or the neighbour's sys name, chassis id or address
	Known  bool   `json:"known"`  // Device is in the inventory
	Port   string `json:"port,omitempty"`
	// ChassisID is the chassis id of an unknown neighbour.
	ChassisID string `json:"chassis_id,omitempty"`
	Address   string `json:"address,omitempty"`
}

// Link is a link between two devices, seen from one end or both.
type Link struct {
	A         LinkEnd  `json:"a"`
	B         LinkEnd  `json:"b"`
	Protocols []string `json:"protocols"` // how it was seen: lldp, cdp
	// Both says each end reported the other.
	Both bool `json:"both"`
}

// DeviceNeighbors is one device's latest neighbour reading, with the
// inventory address it has.
type DeviceNeighbors struct {
	Device  string
	Address string
	Table   NeighborTable
}

// Links turns the neighbour tables of a site's devices into its links: a
// link reported from both ends is one link. A neighbour is matched to a
// device of the site by its chassis id (against what the devices report
// as theirs), then its sys name (against devices' sys names and inventory
// names, case-insensitively and before the first dot), then its address;
// a neighbour matched to none is an unknown end. extra are inventory
// devices that reported nothing, matched by name and address only. Links
// are sorted by their ends.
func Links(devs []DeviceNeighbors, extra []Device) []Link {
	r := newResolver(devs, extra)
	type key struct{ a, ap, b, bp string }
	seen := map[key]int{}
	var out []Link
	var by []string // the device that reported out[i]
	for _, d := range devs {
		for _, n := range d.Table.Neighbors {
			a := LinkEnd{Device: d.Device, Known: true, Port: localPort(n)}
			b := r.end(n)
			if b.Known && b.Device == d.Device {
				continue // a device that sees itself (a loop): not a link
			}
			k := key{a.Device, a.Port, b.Device, b.Port}
			if endLess(b, a) {
				a, b = b, a
				k = key{a.Device, a.Port, b.Device, b.Port}
			}
			if i, ok := seen[k]; ok {
				out[i].Both = true
				if !slices.Contains(out[i].Protocols, n.Protocol) {
					out[i].Protocols = append(out[i].Protocols, n.Protocol)
					slices.Sort(out[i].Protocols)
				}
				continue
			}
			seen[k] = len(out)
			out = append(out, Link{A: a, B: b, Protocols: []string{n.Protocol}})
			by = append(by, d.Device)
		}
	}
	out = mergeOneSided(out, by)
	slices.SortFunc(out, func(x, y Link) int {
		return cmp.Or(cmp.Compare(x.A.Device, y.A.Device), cmp.Compare(x.A.Port, y.A.Port),
			cmp.Compare(x.B.Device, y.B.Device), cmp.Compare(x.B.Port, y.B.Port))
	})
	return out
}

// mergeOneSided joins a link that each of its two ends reported but named
// a port of differently (CDP's "GigabitEthernet0/1" for LLDP's "Gi0/1"):
// two one-sided links between the same two devices, one reported by each,
// are one link when a port matches, or when they are the only such pair.
// Each end keeps the port name its own device gave.
func mergeOneSided(links []Link, by []string) []Link {
	type pair struct{ a, b string }
	cands := map[pair][]int{}
	for i, l := range links {
		if !l.Both && l.A.Known && l.B.Known {
			p := pair{l.A.Device, l.B.Device}
			cands[p] = append(cands[p], i)
		}
	}
	drop := map[int]bool{}
	for _, idx := range cands {
		var fromA, fromB []int
		for _, i := range idx {
			if by[i] == links[i].A.Device {
				fromA = append(fromA, i)
			} else {
				fromB = append(fromB, i)
			}
		}
		for _, i := range fromA {
			for _, j := range fromB {
				li, lj := links[i], links[j]
				if drop[j] || !(li.A.Port == lj.A.Port || li.B.Port == lj.B.Port || (len(fromA) == 1 && len(fromB) == 1)) {
					continue
				}
				li.B.Port = lj.B.Port // as B names it
				li.Both = true
				for _, p := range lj.Protocols {
					if !slices.Contains(li.Protocols, p) {
						li.Protocols = append(li.Protocols, p)
					}
				}
				slices.Sort(li.Protocols)
				links[i] = li
				drop[j] = true
				break
			}
		}
	}
	out := links[:0]
	for i, l := range links {
		if !drop[i] {
			out = append(out, l)
		}
	}
	return out
}

// localPort names a neighbour's local port: its name, else its number.
func localPort(n Neighbor) string {
	if n.LocalPortName != "" {
		return n.LocalPortName
	}
	return strconv.Itoa(n.LocalPort)
}

// endLess orders link ends: known devices before unknown ones, then by name
// and port, so each link has one orientation whichever end reported it.
func endLess(x, y LinkEnd) bool {
	if x.Known != y.Known {
		return x.Known
	}
	return cmp.Or(cmp.Compare(x.Device, y.Device), cmp.Compare(x.Port, y.Port)) < 0
}

type resolver struct {
	byChassis, byName, byAddr map[string]string
}

func newResolver(devs []DeviceNeighbors, extra []Device) *resolver {
	r := &resolver{byChassis: map[string]string{}, byName: map[string]string{}, byAddr: map[string]string{}}
	for _, d := range extra {
		r.byName[hostKey(d.Name)] = d.Name
		if d.Address != "" {
			r.byAddr[d.Address] = d.Name
		}
	}
	for _, d := range devs {
		r.byName[hostKey(d.Device)] = d.Device
		if d.Address != "" {
			r.byAddr[d.Address] = d.Device
		}
	}
	// A device's own sys name wins over another device's inventory name.
	for _, d := range devs {
		if l := d.Table.Local; l.ChassisID != "" {
			r.byChassis[l.ChassisIDSubtype+"/"+l.ChassisID] = d.Device
		}
		if s := d.Table.Local.SysName; s != "" {
			r.byName[hostKey(s)] = d.Device
		}
	}
	return r
}

// end resolves a neighbour to a link end.
func (r *resolver) end(n Neighbor) LinkEnd {
	e := LinkEnd{Port: n.Port()}
	if n.ChassisID != "" {
		if dev, ok := r.byChassis[n.ChassisIDSubtype+"/"+n.ChassisID]; ok {
			e.Device, e.Known = dev, true
			return e
		}
	}
	if n.SysName != "" {
		if dev, ok := r.byName[hostKey(n.SysName)]; ok {
			e.Device, e.Known = dev, true
			return e
		}
	}
	if n.Address != "" {
		if dev, ok := r.byAddr[n.Address]; ok {
			e.Device, e.Known = dev, true
			return e
		}
	}
	e.Device = cmp.Or(n.SysName, n.ChassisID, n.Address, "?")
	e.ChassisID, e.Address = n.ChassisID, n.Address
	return e
}

// hostKey is a name as matched: lower case, up to its first dot.
func hostKey(s string) string {
	s = strings.ToLower(s)
	if i := strings.IndexByte(s, '.'); i > 0 {
		s = s[:i]
	}
	return s
}

// WriteLinks prints links one a line, what `meshmon topology` shows:
// "sim-00001 eth1 -- sim-00002 eth0 (lldp, both ends)", an unknown end
// marked "(unknown)".
func WriteLinks(w io.Writer, links []Link) error {
	end := func(e LinkEnd) string {
		s := e.Device + " " + cmp.Or(e.Port, "?")
		if !e.Known {
			s += " (unknown"
			if e.ChassisID != "" && e.ChassisID != e.Device {
				s += " chassis " + e.ChassisID
			}
			s += ")"
		}
		return s
	}
	for _, l := range links {
		seen := "one end"
		if l.Both {
			seen = "both ends"
		}
		if _, err := fmt.Fprintf(w, "%s -- %s (%s, %s)\n", end(l.A), end(l.B), strings.Join(l.Protocols, "+"), seen); err != nil {
			return err
		}
	}
	if len(links) == 0 {
		_, err := fmt.Fprintln(w, "no links")
		return err
	}
	return nil
}
