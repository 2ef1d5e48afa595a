package sim

import (
	"slices"
	"strconv"
	"strings"

	"github.com/gosnmp/gosnmp"
)

// object identifies one MIB object the agents serve: a scalar or a column.
type object uint8

const (
	objSysDescr object = iota
	objSysObjectID
	objSysUpTime
	objSysContact
	objSysName
	objSysLocation
	objIfNumber
	objIfIndex
	objIfDescr
	objIfType
	objIfSpeed
	objIfAdminStatus
	objIfOperStatus
	objIfInOctets
	objIfOutOctets
	objIfName
	objIfHCInOctets
	objIfHCOutOctets
	objStatic // a fixed value (LLDP and CDP tables): instance.static
)

// objectDef is where an object lives and whether it is a table column.
type objectDef struct {
	obj    object
	oid    []uint32 // without the instance part
	column bool
	c64    bool // Counter64: invisible to SNMPv1 (RFC 3584 4.1.2.1)
}

// OIDs of the objects the agents serve and of the traps they send.
const (
	OIDSysDescr      = ".1.3.6.1.2.1.1.1.0"
	OIDSysObjectID   = ".1.3.6.1.2.1.1.2.0"
	OIDSysUpTime     = ".1.3.6.1.2.1.1.3.0"
	OIDSysContact    = ".1.3.6.1.2.1.1.4.0"
	OIDSysName       = ".1.3.6.1.2.1.1.5.0"
	OIDSysLocation   = ".1.3.6.1.2.1.1.6.0"
	OIDIfNumber      = ".1.3.6.1.2.1.2.1.0"
	OIDIfTable       = ".1.3.6.1.2.1.2.2"
	OIDIfEntry       = ".1.3.6.1.2.1.2.2.1"
	OIDIfXTable      = ".1.3.6.1.2.1.31.1.1"
	OIDIfXEntry      = ".1.3.6.1.2.1.31.1.1.1"
	OIDSnmpTrapOID   = ".1.3.6.1.6.3.1.1.4.1.0"
	OIDColdStart     = ".1.3.6.1.6.3.1.1.5.1"
	OIDLinkDown      = ".1.3.6.1.6.3.1.1.5.3"
	OIDLinkUp        = ".1.3.6.1.6.3.1.1.5.4"
	SimSysObjectID   = ".1.3.6.1.4.1.8072.3.2.10" // net-snmp's Linux agent OID: pollers treat the simulator as a Linux box
	ifTypeEthernet   = 6
	ifSpeedBitPerSec = 1_000_000_000
)

var objectDefs = []objectDef{
	{obj: objSysDescr, oid: mustOID(".1.3.6.1.2.1.1.1")},
	{obj: objSysObjectID, oid: mustOID(".1.3.6.1.2.1.1.2")},
	{obj: objSysUpTime, oid: mustOID(".1.3.6.1.2.1.1.3")},
	{obj: objSysContact, oid: mustOID(".1.3.6.1.2.1.1.4")},
	{obj: objSysName, oid: mustOID(".1.3.6.1.2.1.1.5")},
	{obj: objSysLocation, oid: mustOID(".1.3.6.1.2.1.1.6")},
	{obj: objIfNumber, oid: mustOID(".1.3.6.1.2.1.2.1")},
	{obj: objIfIndex, oid: mustOID(OIDIfEntry + ".1"), column: true},
	{obj: objIfDescr, oid: mustOID(OIDIfEntry + ".2"), column: true},
	{obj: objIfType, oid: mustOID(OIDIfEntry + ".3"), column: true},
	{obj: objIfSpeed, oid: mustOID(OIDIfEntry + ".5"), column: true},
	{obj: objIfAdminStatus, oid: mustOID(OIDIfEntry + ".7"), column: true},
	{obj: objIfOperStatus, oid: mustOID(OIDIfEntry + ".8"), column: true},
	{obj: objIfInOctets, oid: mustOID(OIDIfEntry + ".10"), column: true},
	{obj: objIfOutOctets, oid: mustOID(OIDIfEntry + ".16"), column: true},
	{obj: objIfName, oid: mustOID(OIDIfXEntry + ".1"), column: true},
	{obj: objIfHCInOctets, oid: mustOID(OIDIfXEntry + ".6"), column: true, c64: true},
	{obj: objIfHCOutOctets, oid: mustOID(OIDIfXEntry + ".10"), column: true, c64: true},
}

// instance is one leaf the agents serve: an object and, for columns, the
// ifIndex of the row.
type instance struct {
	oid     []uint32
	name    string // dotted, with a leading dot, as gosnmp writes OIDs
	obj     object
	ifIndex int
	c64     bool
	static  *gosnmp.SnmpPDU // the value of an objStatic instance
}

// mib is the sorted list of instances of an agent with a given number of
// interfaces. It is immutable and shared by all agents of a Sim; the values
// come from each agent's state.
type mib struct {
	leaves []instance
}

func newMIB(interfaces int) *mib {
	var leaves []instance
	for _, d := range objectDefs {
		if !d.column {
			oid := append(slices.Clone(d.oid), 0)
			leaves = append(leaves, instance{oid: oid, name: oidString(oid), obj: d.obj, c64: d.c64})
			continue
		}
		for i := 1; i <= interfaces; i++ {
			oid := append(slices.Clone(d.oid), uint32(i))
			leaves = append(leaves, instance{oid: oid, name: oidString(oid), obj: d.obj, ifIndex: i, c64: d.c64})
		}
	}
	// SNMP orders OIDs by sub-identifier, numerically; slices.Compare on
	// []uint32 is exactly that (a prefix sorts first).
	slices.SortFunc(leaves, func(a, b instance) int { return slices.Compare(a.oid, b.oid) })
	return &mib{leaves: leaves}
}

// mibView is what one agent serves: the Sim's shared mib and, with a
// topology, its own neighbour tables (sorted; nil without). Keeping them
// apart spares each agent a copy of the shared leaves.
type mibView struct {
	shared *mib
	own    *mib
}

func (v mibView) get(oid []uint32, v1 bool) (*instance, bool) {
	if v.own != nil {
		if l, ok := v.own.get(oid, v1); ok {
			return l, true
		}
	}
	return v.shared.get(oid, v1)
}

// next is the first instance after oid in either, the lower one.
func (v mibView) next(oid []uint32, v1 bool) (*instance, bool) {
	l, ok := v.shared.next(oid, v1)
	if v.own == nil {
		return l, ok
	}
	o, ownOK := v.own.next(oid, v1)
	if ownOK && (!ok || slices.Compare(o.oid, l.oid) < 0) {
		return o, true
	}
	return l, ok
}

// get returns the instance with exactly this OID.
func (m *mib) get(oid []uint32, v1 bool) (*instance, bool) {
	i, ok := slices.BinarySearchFunc(m.leaves, oid, func(l instance, t []uint32) int { return slices.Compare(l.oid, t) })
	if !ok || (v1 && m.leaves[i].c64) {
		return nil, false
	}
	return &m.leaves[i], true
}

// next returns the first instance after oid in lexicographic order, or
// false at the end of the MIB view. SNMPv1 does not see Counter64 objects.
func (m *mib) next(oid []uint32, v1 bool) (*instance, bool) {
	i, _ := slices.BinarySearchFunc(m.leaves, oid, func(l instance, t []uint32) int {
		if slices.Compare(l.oid, t) <= 0 {
			return -1
		}
		return 1
	})
	for ; i < len(m.leaves); i++ {
		if !v1 || !m.leaves[i].c64 {
			return &m.leaves[i], true
		}
	}
	return nil, false
}

// knownObject reports whether oid lies under an object the agents implement,
// which makes a failed GET noSuchInstance rather than noSuchObject.
func knownObject(oid []uint32) bool {
	for _, d := range objectDefs {
		if len(oid) > len(d.oid) && slices.Equal(oid[:len(d.oid)], d.oid) {
			return true
		}
	}
	return false
}

// parseOID parses a dotted OID with or without a leading dot.
func parseOID(s string) ([]uint32, bool) {
	s = strings.TrimPrefix(s, ".")
	if s == "" {
		return nil, false
	}
	out := make([]uint32, 0, 16)
	for part := range strings.SplitSeq(s, ".") {
		n, err := strconv.ParseUint(part, 10, 32)
		if err != nil {
			return nil, false
		}
		out = append(out, uint32(n))
	}
	return out, true
}

func mustOID(s string) []uint32 {
	oid, ok := parseOID(s)
	if !ok {
		panic("sim: bad built-in OID " + s)
	}
	return oid
}

func oidString(oid []uint32) string {
	var b strings.Builder
	for _, n := range oid {
		b.WriteByte('.')
		b.WriteString(strconv.FormatUint(uint64(n), 10))
	}
	return b.String()
}

// ifName is the name of interface ifIndex, as in ifName and ifDescr.
func ifName(ifIndex int) string { return "eth" + strconv.Itoa(ifIndex-1) }

// value renders an instance from a snapshot of an agent's state.
func (st *snapshot) value(l *instance) gosnmp.SnmpPDU {
	pdu := gosnmp.SnmpPDU{Name: l.name}
	set := func(t gosnmp.Asn1BER, v any) gosnmp.SnmpPDU { pdu.Type, pdu.Value = t, v; return pdu }
	var ifs *ifSnapshot
	if l.ifIndex > 0 {
		ifs = &st.ifs[l.ifIndex-1]
	}
	switch l.obj {
	case objStatic:
		return set(l.static.Type, l.static.Value)
	case objSysDescr:
		return set(gosnmp.OctetString, "meshmon simulated device, Linux "+st.name+" 6.1.0-sim x86_64")
	case objSysObjectID:
		return set(gosnmp.ObjectIdentifier, SimSysObjectID)
	case objSysUpTime:
		return set(gosnmp.TimeTicks, st.uptime)
	case objSysContact:
		return set(gosnmp.OctetString, "noc@example.net")
	case objSysName:
		return set(gosnmp.OctetString, st.name)
	case objSysLocation:
		return set(gosnmp.OctetString, "simulated rack "+strconv.Itoa(st.index/40+1))
	case objIfNumber:
		return set(gosnmp.Integer, len(st.ifs))
	case objIfIndex:
		return set(gosnmp.Integer, l.ifIndex)
	case objIfDescr:
		return set(gosnmp.OctetString, "Simulated Ethernet "+ifName(l.ifIndex))
	case objIfType:
		return set(gosnmp.Integer, ifTypeEthernet)
	case objIfSpeed:
		return set(gosnmp.Gauge32, uint32(ifSpeedBitPerSec))
	case objIfAdminStatus:
		return set(gosnmp.Integer, 1)
	case objIfOperStatus:
		if ifs.up {
			return set(gosnmp.Integer, 1)
		}
		return set(gosnmp.Integer, 2)
	case objIfInOctets:
		return set(gosnmp.Counter32, uint32(ifs.in))
	case objIfOutOctets:
		return set(gosnmp.Counter32, uint32(ifs.out))
	case objIfName:
		return set(gosnmp.OctetString, ifName(l.ifIndex))
	case objIfHCInOctets:
		return set(gosnmp.Counter64, ifs.in)
	case objIfHCOutOctets:
		return set(gosnmp.Counter64, ifs.out)
	}
	return set(gosnmp.NoSuchObject, nil)
}
