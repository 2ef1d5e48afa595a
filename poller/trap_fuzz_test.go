package poller

import (
	"net"
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/meshmon/meshmon"
)

// fuzzClock is the fixed clock of the fuzzed listener, so informs of the
// seed corpus stay inside its time window.
var fuzzStart = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// v3Seed encodes an SNMPv3 message of user u (its keys localized to
// engineID) carrying pdu.
func v3Seed(t testing.TB, u TrapUser, engineID string, boots, etime uint32, flags gosnmp.SnmpV3MsgFlags, pdu gosnmp.PDUType, vars []gosnmp.SnmpPDU) []byte {
	t.Helper()
	sp := &gosnmp.UsmSecurityParameters{AuthoritativeEngineID: engineID, AuthoritativeEngineBoots: boots, AuthoritativeEngineTime: etime,
		UserName: u.Name, AuthenticationProtocol: gosnmp.NoAuth, PrivacyProtocol: gosnmp.NoPriv}
	if u.AuthProtocol != "" {
		sp.AuthenticationProtocol, sp.AuthenticationPassphrase = authProto(u.AuthProtocol), u.AuthPassword
	}
	if u.PrivProtocol != "" {
		sp.PrivacyProtocol, sp.PrivacyPassphrase = privProto(u.PrivProtocol), u.PrivPassword
		sp.PrivacyParameters = []byte{0, 0, 0, 1, 2, 3, 4, 5}
	}
	if err := sp.InitSecurityKeys(); err != nil {
		t.Fatal(err)
	}
	pkt := &gosnmp.SnmpPacket{Version: gosnmp.Version3, MsgFlags: flags, SecurityModel: gosnmp.UserSecurityModel,
		SecurityParameters: sp, MsgID: 42, MsgMaxSize: 65507, ContextEngineID: engineID, PDUType: pdu, RequestID: 43, Variables: vars}
	b, err := pkt.MarshalMsg()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// trapSeeds are valid v1, v2c and v3 traps and informs, and an engine
// discovery request, for the listener l.
func trapSeeds(t testing.TB, l *TrapListener) [][]byte {
	t.Helper()
	enc := func(p *gosnmp.SnmpPacket) []byte {
		b, err := p.MarshalMsg()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	vars := linkDownVars(77)
	seeds := [][]byte{
		enc(&gosnmp.SnmpPacket{Version: gosnmp.Version1, Community: "public", PDUType: gosnmp.Trap,
			SnmpTrap:  gosnmp.SnmpTrap{Enterprise: ".1.3.6.1.4.1.8072.2.3", AgentAddress: "192.0.2.1", GenericTrap: 6, SpecificTrap: 17, Timestamp: 1234},
			Variables: []gosnmp.SnmpPDU{{Name: ".1.3.6.1.4.1.8072.2.3.2.1", Type: gosnmp.OctetString, Value: "hello"}}}),
		enc(&gosnmp.SnmpPacket{Version: gosnmp.Version1, Community: "public", PDUType: gosnmp.Trap,
			SnmpTrap:  gosnmp.SnmpTrap{Enterprise: ".1.3.6.1.4.1.8072.2.3", AgentAddress: "192.0.2.1", GenericTrap: 2, Timestamp: 5},
			Variables: []gosnmp.SnmpPDU{{Name: ".1.3.6.1.2.1.2.2.1.1.7", Type: gosnmp.Integer, Value: 7}}}),
		enc(&gosnmp.SnmpPacket{Version: gosnmp.Version2c, Community: "public", PDUType: gosnmp.SNMPv2Trap, RequestID: 1, Variables: vars}),
		enc(&gosnmp.SnmpPacket{Version: gosnmp.Version2c, Community: "public", PDUType: gosnmp.InformRequest, RequestID: 2, Variables: vars}),
		enc(&gosnmp.SnmpPacket{Version: gosnmp.Version2c, Community: "public", PDUType: gosnmp.SNMPv2Trap, RequestID: 3}),
		// An engine discovery request.
		enc(&gosnmp.SnmpPacket{Version: gosnmp.Version3, MsgFlags: gosnmp.Reportable, SecurityModel: gosnmp.UserSecurityModel,
			SecurityParameters: &gosnmp.UsmSecurityParameters{}, MsgID: 9, MsgMaxSize: 65507, PDUType: gosnmp.GetRequest, RequestID: 10}),
	}
	boots, etime := l.usm.clock()
	for _, u := range testTrapUsers.Users {
		level := l.usm.users[u.Name].level
		seeds = append(seeds,
			v3Seed(t, u, senderEngineID, 3, 1000, level, gosnmp.SNMPv2Trap, vars),
			v3Seed(t, u, l.EngineID(), boots, etime, level|gosnmp.Reportable, gosnmp.InformRequest, vars))
	}
	return seeds
}

func fuzzListener(t testing.TB) *TrapListener {
	l := NewTrapListener("127.0.0.1:0", nil, nil)
	if err := l.SetV3(testTrapUsers, DefaultTrapEngineID("t", "s", "p"), func() time.Time { return fuzzStart }); err != nil {
		t.Fatal(err)
	}
	return l
}

// TestTrapSeeds: every seed of FuzzTrapPacket decodes to a trap.
func TestTrapSeeds(t *testing.T) {
	l := fuzzListener(t)
	for i, msg := range trapSeeds(t, l) {
		d := l.decode(msg, net.IPv4(192, 0, 2, 1))
		switch {
		case i == 4:
			if d.reason != dropNoTrapOID {
				t.Errorf("seed %d: reason %v, want no trap oid", i, d.reason)
			}
		case i == 5:
			if d.reason != dropDiscovery || d.reply == nil {
				t.Errorf("seed %d: reason %v reply %d bytes, want an answered discovery", i, d.reason, len(d.reply))
			}
		case d.reason != dropNone:
			t.Errorf("seed %d: dropped as %s (%v)", i, dropNames[d.reason], d.err)
		case d.trap.OID == "":
			t.Errorf("seed %d: trap without oid: %+v", i, d.trap)
		}
	}
}

// FuzzTrapPacket feeds datagrams to the listener's decoder: it must never
// panic, and what it keeps must be a trap with an OID and a version.
func FuzzTrapPacket(f *testing.F) {
	l := fuzzListener(f)
	for _, s := range trapSeeds(f, l) {
		f.Add(s)
	}
	from := net.IPv4(192, 0, 2, 1)
	f.Fuzz(func(t *testing.T, msg []byte) {
		d := l.decode(append([]byte(nil), msg...), from)
		if d.reason != dropNone {
			if d.trap.OID != "" || d.ack != nil {
				t.Fatalf("dropped (%d) but gave trap %+v", d.reason, d.trap)
			}
			return
		}
		if d.trap.OID == "" {
			t.Fatalf("kept a trap without oid: %+v", d.trap)
		}
		switch d.trap.Version {
		case meshmon.SNMPv1, meshmon.SNMPv2c, meshmon.SNMPv3:
		default:
			t.Fatalf("kept a trap of version %q", d.trap.Version)
		}
	})
}
