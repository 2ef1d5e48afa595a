package sim

import (
	"testing"

	"github.com/gosnmp/gosnmp"

	"github.com/meshmon/meshmon/internal/snmpv3"
)

// fuzzEngineID replaces the agent's random engine ID in the fuzz tests, so
// that a v3 input kept in testdata/fuzz means the same on every run.
const fuzzEngineID = "\x80\x00\x1f\x88\x05fuzz\x00\x00\x00\x01"

// fuzzAgent is one unstarted agent (no socket: Agent.handle is called
// directly) on a fixed clock, with a user at each USM security level.
func fuzzAgent(f *testing.F) *Agent {
	cfg := testConfig(f, 1)
	cfg.Now = newFakeClock().Now
	cfg.Users = append(cfg.Users,
		V3User{Name: "plain"},
		V3User{Name: "authonly", AuthProtocol: "SHA256", AuthPassword: "meshmon-auth"},
		V3User{Name: "des", AuthProtocol: "MD5", AuthPassword: "meshmon-auth", PrivProtocol: "DES", PrivPassword: "meshmon-priv"},
	)
	s, err := New(cfg)
	if err != nil {
		f.Fatal(err)
	}
	a := s.agents[0]
	a.engineID = fuzzEngineID
	for i := range s.users {
		if a.keys[i], err = s.users[i].localize(a.engineID); err != nil {
			f.Fatal(err)
		}
	}
	return a
}

// FuzzAgentRequest hands the simulator's agent a request datagram, as its
// socket would: it answers or stays silent, never panics, and an answer is
// a response to that request: the same version, request ID (v1/v2c) or
// msgID (v3), within the size limit, and readable by a manager.
func FuzzAgentRequest(f *testing.F) {
	a := fuzzAgent(f)
	oids := func(names ...string) []gosnmp.SnmpPDU {
		out := make([]gosnmp.SnmpPDU, len(names))
		for i, n := range names {
			out[i] = gosnmp.SnmpPDU{Name: n, Type: gosnmp.Null}
		}
		return out
	}
	sys := oids(".1.3.6.1.2.1.1.1.0", ".1.3.6.1.2.1.1.2.0", ".1.3.6.1.2.1.1.3.0", ".1.3.6.1.2.1.1.5.0")
	cols := oids(".1.3.6.1.2.1.2.2.1.2", ".1.3.6.1.2.1.2.2.1.8", ".1.3.6.1.2.1.31.1.1.1.6")
	var seeds []*gosnmp.SnmpPacket
	for _, v := range []gosnmp.SnmpVersion{gosnmp.Version1, gosnmp.Version2c} {
		for _, pt := range []gosnmp.PDUType{gosnmp.GetRequest, gosnmp.GetNextRequest, gosnmp.GetBulkRequest, gosnmp.SetRequest} {
			seeds = append(seeds, &gosnmp.SnmpPacket{Version: v, Community: "public", PDUType: pt, RequestID: 42,
				Variables: append(append([]gosnmp.SnmpPDU{}, sys...), cols...), NonRepeaters: 4, MaxRepetitions: 10})
		}
		seeds = append(seeds, &gosnmp.SnmpPacket{Version: v, Community: "private", PDUType: gosnmp.GetRequest, RequestID: 7, Variables: sys})
	}
	seeds = append(seeds, &gosnmp.SnmpPacket{Version: gosnmp.Version2c, Community: "public", PDUType: gosnmp.GetBulkRequest,
		RequestID: 9, Variables: oids(".1.3"), MaxRepetitions: 1 << 30})
	// SNMPv3: engine discovery, then a request of each user at its level.
	boots, etime := a.engineClock()
	seeds = append(seeds, &gosnmp.SnmpPacket{Version: gosnmp.Version3, MsgFlags: gosnmp.Reportable, SecurityModel: gosnmp.UserSecurityModel,
		MsgID: 1, PDUType: gosnmp.GetRequest, RequestID: 1, SecurityParameters: &gosnmp.UsmSecurityParameters{}})
	for i := range a.sim.users {
		u, keys := &a.sim.users[i], a.keys[i]
		seeds = append(seeds, &gosnmp.SnmpPacket{Version: gosnmp.Version3, MsgFlags: u.level | gosnmp.Reportable,
			SecurityModel: gosnmp.UserSecurityModel, MsgID: uint32(100 + i), ContextEngineID: a.engineID,
			SecurityParameters: a.securityParameters(u, &keys, u.level, boots, etime),
			PDUType:            gosnmp.GetBulkRequest, RequestID: uint32(200 + i), Variables: cols, MaxRepetitions: 5})
	}
	for _, p := range seeds {
		b, err := p.MarshalMsg()
		if err != nil {
			f.Fatalf("seed %+v: %v", p, err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x03})
	f.Add([]byte{0x30, 0x84, 0xff, 0xff, 0xff, 0xff})

	dec := &gosnmp.GoSNMP{Version: gosnmp.Version2c}
	f.Fuzz(func(t *testing.T, req []byte) {
		in := append([]byte(nil), req...)
		out := a.handle(in)
		if out == nil {
			return
		}
		if len(out) > maxResponseSize {
			t.Fatalf("answer of %d bytes, above %d", len(out), maxResponseSize)
		}
		version, ok := messageVersion(req)
		if !ok {
			t.Fatalf("answered a message without a version")
		}
		if got, ok := messageVersion(out); !ok || got != version {
			t.Fatalf("answered version %v to a version %v request", got, version)
		}
		if version == gosnmp.Version3 {
			hreq, err := snmpv3.ParseHeader(req)
			if err != nil {
				t.Fatalf("answered an unreadable v3 header: %v", err)
			}
			hout, err := snmpv3.ParseHeader(out)
			if err != nil {
				t.Fatalf("answer's v3 header is unreadable: %v", err)
			}
			if hout.MsgID != hreq.MsgID || hout.EngineID != a.engineID {
				t.Fatalf("answer msgID %d engine %x, request msgID %d", hout.MsgID, hout.EngineID, hreq.MsgID)
			}
			return
		}
		p, err := dec.UnmarshalTrap(req, false)
		if err != nil {
			t.Fatalf("answered a request that does not decode: %v", err)
		}
		r, err := dec.UnmarshalTrap(out, false)
		if err != nil {
			t.Fatalf("answer does not decode: %v", err)
		}
		if r.PDUType != gosnmp.GetResponse || r.RequestID != p.RequestID || r.Community != p.Community {
			t.Fatalf("answer %v id %d community %q to request id %d community %q", r.PDUType, r.RequestID, r.Community, p.RequestID, p.Community)
		}
	})
}
