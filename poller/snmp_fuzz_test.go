package poller

import (
	"context"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/meshmon/meshmon"
)

// scriptedAgent is the socket of a prober whose agent answers the first
// request with get and every later one with walk, straight from the fuzz
// input: the bytes go through gosnmp's decoding as a real datagram would.
// A request it has answered waits no longer: the next read times out at
// once.
type scriptedAgent struct {
	get, walk []byte
	sent      int // requests written
	answered  int // requests answered
}

func (a *scriptedAgent) Write(b []byte) (int, error) { a.sent++; return len(b), nil }

func (a *scriptedAgent) Read(b []byte) (int, error) {
	if a.answered == a.sent {
		return 0, os.ErrDeadlineExceeded
	}
	a.answered = a.sent
	if a.answered == 1 {
		return copy(b, a.get), nil
	}
	return copy(b, a.walk), nil
}

func (a *scriptedAgent) Close() error { return nil }
func (a *scriptedAgent) LocalAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000}
}
func (a *scriptedAgent) RemoteAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 161}
}
func (a *scriptedAgent) SetDeadline(time.Time) error      { return nil }
func (a *scriptedAgent) SetReadDeadline(time.Time) error  { return nil }
func (a *scriptedAgent) SetWriteDeadline(time.Time) error { return nil }

// FuzzSNMPResponse polls a device whose answers are the fuzz input: the
// answer to the system group GET, then the answer to every request of the
// interface walk (GETBULK in v2c, GETNEXT in v1). Answers carry request-id
// 0, which gosnmp takes as an answer to any request. A poll never panics
// and ends promptly; a good one has interfaces in increasing ifIndex order,
// a failed one a reason and an error.
func FuzzSNMPResponse(f *testing.F) {
	marshal := func(v gosnmp.SnmpVersion, vars []gosnmp.SnmpPDU, status gosnmp.SNMPError, index uint8) []byte {
		p := &gosnmp.SnmpPacket{Version: v, Community: "public", PDUType: gosnmp.GetResponse, Variables: vars, Error: status, ErrorIndex: index}
		b, err := p.MarshalMsg()
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	sys := []gosnmp.SnmpPDU{
		{Name: "." + oidSysDescr, Type: gosnmp.OctetString, Value: []byte("Linux r1 6.1")},
		{Name: "." + oidSysObjectID, Type: gosnmp.ObjectIdentifier, Value: ".1.3.6.1.4.1.8072.3.2.10"},
		{Name: "." + oidSysUpTime, Type: gosnmp.TimeTicks, Value: uint32(123456)},
		{Name: "." + oidSysName, Type: gosnmp.OctetString, Value: []byte("r1")},
	}
	row := func(v gosnmp.SnmpVersion, idx int) []gosnmp.SnmpPDU {
		i := "." + strconv.Itoa(idx)
		out := []gosnmp.SnmpPDU{
			{Name: "." + oidIfIndex + i, Type: gosnmp.Integer, Value: idx},
			{Name: "." + oidIfDescr + i, Type: gosnmp.OctetString, Value: []byte("eth" + strconv.Itoa(idx-1))},
			{Name: "." + oidIfAdminStatus + i, Type: gosnmp.Integer, Value: 1},
			{Name: "." + oidIfOperStatus + i, Type: gosnmp.Integer, Value: 2},
			{Name: "." + oidIfInOctets + i, Type: gosnmp.Counter32, Value: uint(1000 * idx)},
			{Name: "." + oidIfOutOctets + i, Type: gosnmp.Counter32, Value: uint(2000 * idx)},
			{Name: "." + oidIfName + i, Type: gosnmp.OctetString, Value: []byte("eth" + strconv.Itoa(idx-1))},
		}
		if v != gosnmp.Version1 {
			out = append(out,
				gosnmp.SnmpPDU{Name: "." + oidIfHCInOctets + i, Type: gosnmp.Counter64, Value: uint64(1) << 40},
				gosnmp.SnmpPDU{Name: "." + oidIfHCOutOctets + i, Type: gosnmp.Counter64, Value: uint64(idx)})
		}
		return out
	}
	for _, v := range []gosnmp.SnmpVersion{gosnmp.Version1, gosnmp.Version2c} {
		get := marshal(v, sys, gosnmp.NoError, 0)
		f.Add(uint8(v), get, marshal(v, append(row(v, 1), row(v, 2)...), gosnmp.NoError, 0))
		f.Add(uint8(v), get, marshal(v, []gosnmp.SnmpPDU{{Name: ".1.3.6.1.2.1.2.2.1.1.1", Type: gosnmp.EndOfMibView}}, gosnmp.NoError, 0))
		f.Add(uint8(v), marshal(v, sys[:1], gosnmp.NoSuchName, 2), marshal(v, row(v, 3), gosnmp.TooBig, 0))
		f.Add(uint8(v), get, marshal(v, row(v, 1)[:1], gosnmp.NoSuchName, 1))
	}
	f.Add(uint8(1), []byte{0x30, 0x00}, []byte{})

	f.Fuzz(func(t *testing.T, version uint8, get, walk []byte) {
		v := meshmon.SNMPv2c
		if version%2 == 0 {
			v = meshmon.SNMPv1
		}
		dev := meshmon.Device{Name: "r1", Address: "127.0.0.1", Checks: []string{meshmon.CheckSNMP}, Interval: meshmon.Duration(time.Minute),
			SNMP: &meshmon.SNMP{Version: v, Community: "public", Port: 161}}
		p, err := NewSNMPProber(dev)
		if err != nil {
			t.Fatal(err)
		}
		c, err := p.newClient()
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Connect(); err != nil { // a UDP socket; nothing is sent on it
			t.Fatal(err)
		}
		_ = c.Conn.Close()
		agent := &scriptedAgent{get: get, walk: walk}
		c.Conn = &recordingConn{Conn: agent}
		p.client = c

		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		res := p.Poll(ctx)
		if ctx.Err() != nil {
			t.Fatalf("poll did not end before 10 s (%d requests)", agent.sent)
		}
		if !res.OK {
			if res.Err == nil || res.Reason == "" {
				t.Fatalf("failed poll without a reason or error: %+v", res)
			}
			return
		}
		if res.Err != nil || res.Reason != "" {
			t.Fatalf("good poll with a reason or error: %+v", res)
		}
		if !slices.IsSortedFunc(res.Interfaces, func(a, b IfRow) int { return a.Index - b.Index }) {
			t.Fatalf("interfaces out of order: %+v", res.Interfaces)
		}
		for i, r := range res.Interfaces {
			if r.Index < 0 || i > 0 && res.Interfaces[i-1].Index == r.Index {
				t.Fatalf("bad or repeated ifIndex %d: %+v", r.Index, res.Interfaces)
			}
		}
		if testing.Verbose() {
			t.Logf("%s %s %d interfaces: %+v", res.SysName, res.SysObjectID, len(res.Interfaces), res.Interfaces)
		}
		if strings.HasPrefix(res.SysObjectID, ".") {
			t.Fatalf("sysObjectID %q keeps its leading dot", res.SysObjectID)
		}
	})
}

// FuzzUnauthenticatedReport reads the last datagram of a failed SNMPv3 poll
// as the prober does, to find the agent's unauthenticated report: it
// returns nil or one of gosnmp's USM errors, and never panics.
func FuzzUnauthenticatedReport(f *testing.F) {
	for _, oid := range slices.Sorted(maps.Keys(usmReports)) {
		p := &gosnmp.SnmpPacket{Version: gosnmp.Version3, MsgFlags: gosnmp.NoAuthNoPriv, SecurityModel: gosnmp.UserSecurityModel,
			MsgID: 7, PDUType: gosnmp.Report, RequestID: 0,
			SecurityParameters: &gosnmp.UsmSecurityParameters{AuthoritativeEngineID: "\x80\x00\x1f\x88\x05fuzz", AuthoritativeEngineBoots: 1, AuthoritativeEngineTime: 9, UserName: "meshmon"},
			Variables:          []gosnmp.SnmpPDU{{Name: "." + oid, Type: gosnmp.Counter32, Value: uint32(3)}},
		}
		b, err := p.MarshalMsg()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x03})
	f.Fuzz(func(t *testing.T, msg []byte) {
		err := unauthenticatedReport("meshmon", msg)
		if err == nil {
			return
		}
		for _, e := range usmReports {
			if err == e {
				return
			}
		}
		t.Fatalf("unauthenticatedReport = %v, not one of the USM report errors", err)
	})
}
