package poller

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/meshmon/meshmon"
)

// startTrapListener starts a listener on 127.0.0.1:0 whose traps arrive on
// the returned channel.
func startTrapListener(t *testing.T) (*TrapListener, <-chan meshmon.Trap) {
	t.Helper()
	ch := make(chan meshmon.Trap, 16)
	l := NewTrapListener("127.0.0.1:0", nil, func(tr meshmon.Trap, ack func()) bool {
		ch <- tr
		if ack != nil {
			ack()
		}
		return true
	})
	if err := l.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l, ch
}

func waitTrap(t *testing.T, ch <-chan meshmon.Trap) meshmon.Trap {
	t.Helper()
	select {
	case tr := <-ch:
		return tr
	case <-time.After(10 * time.Second):
		t.Fatal("no trap within 10s")
	}
	return meshmon.Trap{}
}

func trapSender(t *testing.T, l *TrapListener, v gosnmp.SnmpVersion) *gosnmp.GoSNMP {
	t.Helper()
	a := l.Addr().(*net.UDPAddr)
	c := &gosnmp.GoSNMP{Target: "127.0.0.1", Port: uint16(a.Port), Community: "public",
		Version: v, Timeout: 2 * time.Second, Retries: 1}
	if err := c.Connect(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestTrapV2c(t *testing.T) {
	l, ch := startTrapListener(t)
	c := trapSender(t, l, gosnmp.Version2c)
	_, err := c.SendTrap(gosnmp.SnmpTrap{Variables: []gosnmp.SnmpPDU{
		{Name: "." + oidSysUpTime, Type: gosnmp.TimeTicks, Value: uint32(4242)},
		{Name: "." + oidSnmpTrapOID, Type: gosnmp.ObjectIdentifier, Value: "." + oidLinkDown},
		{Name: ".1.3.6.1.2.1.2.2.1.1.3", Type: gosnmp.Integer, Value: 3},
		{Name: ".1.3.6.1.2.1.2.2.1.7.3", Type: gosnmp.Integer, Value: 1},
		{Name: ".1.3.6.1.2.1.2.2.1.8.3", Type: gosnmp.Integer, Value: 2},
		{Name: ".1.3.6.1.2.1.2.2.1.2.3", Type: gosnmp.OctetString, Value: "eth3"},
		{Name: ".1.3.6.1.2.1.2.2.1.6.3", Type: gosnmp.OctetString, Value: []byte{0, 0x1a, 0x2b, 0xff}},
		{Name: ".1.3.6.1.2.1.4.20.1.1.1", Type: gosnmp.IPAddress, Value: "10.1.2.3"},
		{Name: ".1.3.6.1.2.1.2.2.1.10.3", Type: gosnmp.Counter32, Value: uint(77)},
		{Name: ".1.3.6.1.2.1.31.1.1.1.6.3", Type: gosnmp.Counter64, Value: uint64(1) << 40},
	}})
	if err != nil {
		t.Fatalf("SendTrap: %v", err)
	}
	got := waitTrap(t, ch)
	want := meshmon.Trap{
		Version: "2c", From: "127.0.0.1", Community: "public", OID: oidLinkDown, Uptime: 4242,
		Varbinds: []meshmon.Varbind{
			{OID: "1.3.6.1.2.1.2.2.1.1.3", Type: "Integer32", Value: "3"},
			{OID: "1.3.6.1.2.1.2.2.1.7.3", Type: "Integer32", Value: "1"},
			{OID: "1.3.6.1.2.1.2.2.1.8.3", Type: "Integer32", Value: "2"},
			{OID: "1.3.6.1.2.1.2.2.1.2.3", Type: "OctetString", Value: "eth3"},
			{OID: "1.3.6.1.2.1.2.2.1.6.3", Type: "OctetString", Value: "00:1a:2b:ff"},
			{OID: "1.3.6.1.2.1.4.20.1.1.1", Type: "IpAddress", Value: "10.1.2.3"},
			{OID: "1.3.6.1.2.1.2.2.1.10.3", Type: "Counter32", Value: "77"},
			{OID: "1.3.6.1.2.1.31.1.1.1.6.3", Type: "Counter64", Value: "1099511627776"},
		},
		Labels: map[string]string{"trap": "linkDown", "if_index": "3", "if_descr": "eth3"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("trap\n got %+v\nwant %+v", got, want)
	}
}

func TestTrapV1(t *testing.T) {
	l, ch := startTrapListener(t)
	c := trapSender(t, l, gosnmp.Version1)
	tests := []struct {
		name string
		trap gosnmp.SnmpTrap
		want meshmon.Trap
	}{
		{"enterprise specific", gosnmp.SnmpTrap{
			Enterprise: ".1.3.6.1.4.1.8072.2.3", AgentAddress: "127.0.0.1", GenericTrap: 6, SpecificTrap: 17, Timestamp: 1234,
			Variables: []gosnmp.SnmpPDU{{Name: ".1.3.6.1.4.1.8072.2.3.2.1", Type: gosnmp.OctetString, Value: "hello"}},
		}, meshmon.Trap{Version: "1", From: "127.0.0.1", Community: "public", OID: "1.3.6.1.4.1.8072.2.3.0.17",
			Uptime: 1234, Generic: 6, Specific: 17,
			Varbinds: []meshmon.Varbind{{OID: "1.3.6.1.4.1.8072.2.3.2.1", Type: "OctetString", Value: "hello"}}}},
		{"generic linkUp", gosnmp.SnmpTrap{
			Enterprise: ".1.3.6.1.4.1.8072.2.3", AgentAddress: "127.0.0.1", GenericTrap: 3, Timestamp: 99,
			Variables: []gosnmp.SnmpPDU{{Name: ".1.3.6.1.2.1.2.2.1.1.7", Type: gosnmp.Integer, Value: 7}},
		}, meshmon.Trap{Version: "1", From: "127.0.0.1", Community: "public", OID: oidLinkUp,
			Uptime: 99, Generic: 3,
			Varbinds: []meshmon.Varbind{{OID: "1.3.6.1.2.1.2.2.1.1.7", Type: "Integer32", Value: "7"}},
			Labels:   map[string]string{"trap": "linkUp", "if_index": "7"}}},
		{"generic coldStart", gosnmp.SnmpTrap{
			Enterprise: ".1.3.6.1.4.1.8072.2.3", AgentAddress: "127.0.0.1", GenericTrap: 0, Timestamp: 1,
		}, meshmon.Trap{Version: "1", From: "127.0.0.1", Community: "public", OID: oidColdStart,
			Uptime: 1, Labels: map[string]string{"trap": "coldStart"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := c.SendTrap(tt.trap); err != nil {
				t.Fatalf("SendTrap: %v", err)
			}
			if got := waitTrap(t, ch); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("trap\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestTrapInform(t *testing.T) {
	l, ch := startTrapListener(t)
	c := trapSender(t, l, gosnmp.Version2c)
	_, err := c.SendTrap(gosnmp.SnmpTrap{IsInform: true, Variables: []gosnmp.SnmpPDU{
		{Name: "." + oidSysUpTime, Type: gosnmp.TimeTicks, Value: uint32(5)},
		{Name: "." + oidSnmpTrapOID, Type: gosnmp.ObjectIdentifier, Value: "." + oidWarmStart},
	}})
	if err != nil {
		t.Fatalf("inform was not acknowledged: %v", err)
	}
	got := waitTrap(t, ch)
	if got.OID != oidWarmStart || got.Labels["trap"] != "warmStart" || got.Uptime != 5 {
		t.Errorf("inform converted to %+v", got)
	}
}

// TestTrapNetSNMP sends traps with net-snmp's snmptrap command.
func TestTrapNetSNMP(t *testing.T) {
	bin := needTool(t, "snmptrap")
	l, ch := startTrapListener(t)
	target := "127.0.0.1:" + strconv.Itoa(l.Addr().(*net.UDPAddr).Port)
	dir := t.TempDir()
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		// Keep net-snmp's persistent files and configuration out of /var/lib/snmp.
		cmd.Env = append(os.Environ(), "SNMP_PERSISTENT_DIR="+dir, "SNMPCONFPATH="+dir, "MIBS=", "MIBDIRS="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("snmptrap %v: %v\n%s", args, err, out)
		}
	}
	run("-v", "2c", "-c", "public", target, "", oidLinkDown, "1.3.6.1.2.1.2.2.1.1.3", "i", "3")
	got := waitTrap(t, ch)
	if got.Version != "2c" || got.Community != "public" || got.From != "127.0.0.1" || got.OID != oidLinkDown ||
		got.Uptime == 0 || !reflect.DeepEqual(got.Labels, map[string]string{"trap": "linkDown", "if_index": "3"}) {
		t.Errorf("v2c snmptrap converted to %+v", got)
	}

	run("-v", "1", "-c", "public", target, "1.3.6.1.4.1.8072.2.3", "127.0.0.1", "2", "0", "",
		"1.3.6.1.2.1.2.2.1.1.3", "i", "3")
	got = waitTrap(t, ch)
	if got.Version != "1" || got.OID != oidLinkDown || got.Generic != 2 ||
		!reflect.DeepEqual(got.Labels, map[string]string{"trap": "linkDown", "if_index": "3"}) {
		t.Errorf("v1 snmptrap converted to %+v", got)
	}

	run("-v", "1", "-c", "public", target, "1.3.6.1.4.1.8072.2.3", "127.0.0.1", "6", "99", "",
		"1.3.6.1.4.1.8072.2.3.2.1", "s", "x")
	got = waitTrap(t, ch)
	if got.OID != "1.3.6.1.4.1.8072.2.3.0.99" || got.Specific != 99 || got.Labels != nil {
		t.Errorf("v1 enterprise snmptrap converted to %+v", got)
	}
}

func TestTrapListenerLifecycle(t *testing.T) {
	l, _ := startTrapListener(t)

	// A second listener on the same address fails clearly.
	other := NewTrapListener(l.Addr().String(), nil, nil)
	if err := other.Start(context.Background()); !errors.Is(err, ErrTrapListen) {
		t.Fatalf("Start on a taken address: %v, want ErrTrapListen", err)
	}
	if err := other.Close(); err != nil {
		t.Fatalf("Close of an unstarted listener: %v", err)
	}
	if err := l.Start(context.Background()); !errors.Is(err, ErrTrapListen) {
		t.Fatalf("second Start: %v, want ErrTrapListen", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// The port is free again: the goroutine is gone and the socket closed.
	again := NewTrapListener(l.Addr().String(), nil, nil)
	if err := again.Start(context.Background()); err != nil {
		t.Fatalf("rebind after Close: %v", err)
	}
	again.Close()

	// Stop ends the intake but keeps the socket, so informs received
	// before it can still be acknowledged after it.
	acks := make(chan func(), 1)
	held := NewTrapListener("127.0.0.1:0", nil, func(_ meshmon.Trap, ack func()) bool { acks <- ack; return true })
	if err := held.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	c := trapSender(t, held, gosnmp.Version2c)
	informed := make(chan error, 1)
	go func() {
		_, err := c.SendTrap(gosnmp.SnmpTrap{IsInform: true, Variables: []gosnmp.SnmpPDU{
			{Name: "." + oidSnmpTrapOID, Type: gosnmp.ObjectIdentifier, Value: "." + oidColdStart},
		}})
		informed <- err
	}()
	var ack func()
	select {
	case ack = <-acks:
	case <-time.After(10 * time.Second):
		t.Fatal("inform not handed on")
	}
	held.Stop()
	held.mu.Lock()
	done := held.done
	held.mu.Unlock()
	select {
	case <-done:
	default:
		t.Fatal("read loop still running after Stop returned")
	}
	ack()
	if err := <-informed; err != nil {
		t.Fatalf("inform acknowledged after Stop: %v", err)
	}
}

// TestInformAckedOnlyWhenStored: an inform whose handler does not ack it
// (the spool did not take it) gets no answer, so its sender retries.
func TestInformAckedOnlyWhenStored(t *testing.T) {
	var calls atomic.Int32
	l := NewTrapListener("127.0.0.1:0", nil, func(_ meshmon.Trap, ack func()) bool {
		if calls.Add(1) > 1 {
			ack() // stored on the second try
		}
		return true
	})
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c := trapSender(t, l, gosnmp.Version2c)
	c.Timeout, c.Retries = 300*time.Millisecond, 3
	_, err := c.SendTrap(gosnmp.SnmpTrap{IsInform: true, Variables: []gosnmp.SnmpPDU{
		{Name: "." + oidSnmpTrapOID, Type: gosnmp.ObjectIdentifier, Value: "." + oidColdStart},
	}})
	if err != nil {
		t.Fatalf("inform: %v", err)
	}
	if n := calls.Load(); n < 2 {
		t.Fatalf("inform acknowledged after %d deliveries; the first was never stored", n)
	}
}

func TestV1TrapOID(t *testing.T) {
	tests := []struct {
		enterprise        string
		generic, specific int
		want              string
	}{
		{".1.3.6.1.4.1.9", 0, 0, "1.3.6.1.6.3.1.1.5.1"},
		{".1.3.6.1.4.1.9", 2, 0, "1.3.6.1.6.3.1.1.5.3"},
		{".1.3.6.1.4.1.9", 5, 0, "1.3.6.1.6.3.1.1.5.6"},
		{".1.3.6.1.4.1.9", 6, 42, "1.3.6.1.4.1.9.0.42"},
		{"1.3.6.1.4.1.9", 6, 0, "1.3.6.1.4.1.9.0.0"},
	}
	for _, tt := range tests {
		if got := v1TrapOID(tt.enterprise, tt.generic, tt.specific); got != tt.want {
			t.Errorf("v1TrapOID(%s, %d, %d) = %s, want %s", tt.enterprise, tt.generic, tt.specific, got, tt.want)
		}
	}
}

func TestRenderVarbind(t *testing.T) {
	tests := []struct {
		pdu  gosnmp.SnmpPDU
		want meshmon.Varbind
	}{
		{gosnmp.SnmpPDU{Name: ".1.2", Type: gosnmp.OctetString, Value: []byte("up and running")}, meshmon.Varbind{OID: "1.2", Type: "OctetString", Value: "up and running"}},
		{gosnmp.SnmpPDU{Name: ".1.2", Type: gosnmp.OctetString, Value: []byte{0xde, 0xad, 0x00}}, meshmon.Varbind{OID: "1.2", Type: "OctetString", Value: "de:ad:00"}},
		{gosnmp.SnmpPDU{Name: ".1.2", Type: gosnmp.ObjectIdentifier, Value: ".1.3.6.1"}, meshmon.Varbind{OID: "1.2", Type: "ObjectIdentifier", Value: "1.3.6.1"}},
		{gosnmp.SnmpPDU{Name: ".1.2", Type: gosnmp.Integer, Value: -5}, meshmon.Varbind{OID: "1.2", Type: "Integer32", Value: "-5"}},
		{gosnmp.SnmpPDU{Name: ".1.2", Type: gosnmp.TimeTicks, Value: uint32(100)}, meshmon.Varbind{OID: "1.2", Type: "TimeTicks", Value: "100"}},
		{gosnmp.SnmpPDU{Name: ".1.2", Type: gosnmp.Gauge32, Value: uint(7)}, meshmon.Varbind{OID: "1.2", Type: "Gauge32", Value: "7"}},
		{gosnmp.SnmpPDU{Name: ".1.2", Type: gosnmp.IPAddress, Value: "192.0.2.1"}, meshmon.Varbind{OID: "1.2", Type: "IpAddress", Value: "192.0.2.1"}},
		{gosnmp.SnmpPDU{Name: ".1.2", Type: gosnmp.NoSuchInstance}, meshmon.Varbind{OID: "1.2", Type: "noSuchInstance"}},
	}
	for _, tt := range tests {
		if got := renderVarbind(tt.pdu); got != tt.want {
			t.Errorf("renderVarbind(%+v) = %+v, want %+v", tt.pdu, got, tt.want)
		}
	}
}

// TestTrapLabelsIfIndexIsANumber: a linkDown's ifIndex varbind names the
// interface only when it holds a number; central builds the alarm's
// check, subject and key of it, and refuses anything else
// (meshmon.CheckEvent). Text there falls back to another column's index.
func TestTrapLabelsIfIndexIsANumber(t *testing.T) {
	for _, tc := range []struct {
		value string
		more  []meshmon.Varbind
		want  string
	}{
		{"3", nil, "3"},
		{"1 x", nil, ""},
		{"-1", nil, ""},
		{"", nil, ""},
		{"99999999999", nil, ""},
		{"1 x", []meshmon.Varbind{{OID: oidIfOperStatus + ".4", Type: "Integer", Value: "2"}}, "4"},
	} {
		tr := meshmon.Trap{OID: oidLinkDown, Varbinds: append([]meshmon.Varbind{{OID: oidIfIndex + ".3", Type: "OctetString", Value: tc.value}}, tc.more...)}
		if got := trapLabels(tr)["if_index"]; got != tc.want {
			t.Errorf("ifIndex varbind %q: if_index %q, want %q", tc.value, got, tc.want)
		}
	}
}
