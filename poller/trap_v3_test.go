package poller

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/internal/snmpv3"
)

// senderEngineID is the engine ID of the test's trap senders (authoritative
// for their traps).
const senderEngineID = "\x80\x00\x1f\x88\x05sender01"

var testTrapUsers = TrapUsers{Users: []TrapUser{
	{Name: "plain"},
	{Name: "md5des", AuthProtocol: "MD5", AuthPassword: "md5-pass-1", PrivProtocol: "DES", PrivPassword: "des-pass-1"},
	{Name: "shaonly", AuthProtocol: "SHA", AuthPassword: "sha-pass-1"},
	{Name: "shaaes", AuthProtocol: "SHA", AuthPassword: "sha-pass-2", PrivProtocol: "AES", PrivPassword: "aes-pass-2"},
	{Name: "sha256aes256", AuthProtocol: "SHA256", AuthPassword: "sha256-pass", PrivProtocol: "AES256", PrivPassword: "aes256-pass"},
	{Name: "sha512aes256c", AuthProtocol: "SHA512", AuthPassword: "sha512-pass", PrivProtocol: "AES256C", PrivPassword: "aes256c-pass"},
}}

// startV3Listener starts a listener with testTrapUsers whose traps arrive on
// the returned channel.
func startV3Listener(t *testing.T) (*TrapListener, <-chan meshmon.Trap) {
	t.Helper()
	ch := make(chan meshmon.Trap, 64)
	l := NewTrapListener("127.0.0.1:0", nil, func(tr meshmon.Trap, ack func()) bool {
		ch <- tr
		if ack != nil {
			ack()
		}
		return true
	})
	if err := l.SetV3(testTrapUsers, DefaultTrapEngineID("t", "s", "p"), nil); err != nil {
		t.Fatalf("SetV3: %v", err)
	}
	if err := l.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l, ch
}

// v3Sender returns a gosnmp client for user u (with passwords possibly
// changed by the caller) aimed at l. With engineID "" it discovers the
// listener's engine (informs); else it is the sender's own (traps).
func v3Sender(t *testing.T, l *TrapListener, u TrapUser, engineID string) *gosnmp.GoSNMP {
	t.Helper()
	sp := &gosnmp.UsmSecurityParameters{UserName: u.Name, AuthoritativeEngineID: engineID,
		AuthenticationProtocol: gosnmp.NoAuth, PrivacyProtocol: gosnmp.NoPriv}
	flags := gosnmp.NoAuthNoPriv
	if u.AuthProtocol != "" {
		sp.AuthenticationProtocol, sp.AuthenticationPassphrase = authProto(u.AuthProtocol), u.AuthPassword
		flags = gosnmp.AuthNoPriv
	}
	if u.PrivProtocol != "" {
		sp.PrivacyProtocol, sp.PrivacyPassphrase = privProto(u.PrivProtocol), u.PrivPassword
		flags = gosnmp.AuthPriv
	}
	if engineID != "" {
		sp.AuthoritativeEngineBoots, sp.AuthoritativeEngineTime = 3, 1000
	}
	a := l.Addr().(*net.UDPAddr)
	c := &gosnmp.GoSNMP{Target: "127.0.0.1", Port: uint16(a.Port), Version: gosnmp.Version3,
		SecurityModel: gosnmp.UserSecurityModel, MsgFlags: flags, SecurityParameters: sp,
		Timeout: 2 * time.Second, Retries: 1}
	if err := c.Connect(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func linkDownVars(uptime uint32) []gosnmp.SnmpPDU {
	return []gosnmp.SnmpPDU{
		{Name: "." + oidSysUpTime, Type: gosnmp.TimeTicks, Value: uptime},
		{Name: "." + oidSnmpTrapOID, Type: gosnmp.ObjectIdentifier, Value: "." + oidLinkDown},
		{Name: ".1.3.6.1.2.1.2.2.1.1.3", Type: gosnmp.Integer, Value: 3},
	}
}

// TestTrapV3 sends a v3 trap and a v3 inform as each user, at each
// security level, and checks each becomes one trap.
func TestTrapV3(t *testing.T) {
	l, ch := startV3Listener(t)
	for i, u := range testTrapUsers.Users {
		t.Run(u.Name, func(t *testing.T) {
			c := v3Sender(t, l, u, senderEngineID)
			if _, err := c.SendTrap(gosnmp.SnmpTrap{Variables: linkDownVars(uint32(100 + i))}); err != nil {
				t.Fatalf("SendTrap: %v", err)
			}
			got := waitTrap(t, ch)
			if got.Version != meshmon.SNMPv3 || got.User != u.Name || got.OID != oidLinkDown || got.Uptime != uint32(100+i) ||
				got.Community != "" || got.Labels["if_index"] != "3" || len(got.Varbinds) != 1 {
				t.Errorf("v3 trap converted to %+v", got)
			}

			// An inform: the sender discovers the listener's engine first.
			ic := v3Sender(t, l, u, "")
			before := l.Discoveries()
			if _, err := ic.SendTrap(gosnmp.SnmpTrap{IsInform: true, Variables: linkDownVars(uint32(200 + i))}); err != nil {
				t.Fatalf("inform was not acknowledged: %v", err)
			}
			got = waitTrap(t, ch)
			if got.Version != meshmon.SNMPv3 || got.User != u.Name || got.Uptime != uint32(200+i) {
				t.Errorf("v3 inform converted to %+v", got)
			}
			if l.Discoveries() != before+1 {
				t.Errorf("discoveries %d, want %d", l.Discoveries(), before+1)
			}
			if sp := ic.SecurityParameters.(*gosnmp.UsmSecurityParameters); sp.AuthoritativeEngineID != l.EngineID() {
				t.Errorf("sender discovered engine %x, want %x", sp.AuthoritativeEngineID, l.EngineID())
			}
		})
	}
	if inv := l.Invalid(); len(inv) != 0 {
		t.Errorf("invalid counts %v after valid traps", inv)
	}
}

// sendRaw sends one datagram to the listener.
func sendRaw(t *testing.T, l *TrapListener, b []byte) {
	t.Helper()
	c, err := net.DialUDP("udp", nil, l.Addr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
}

// waitInvalid waits until the listener's invalid counts are want.
func waitInvalid(t *testing.T, l *TrapListener, want map[string]uint64) {
	t.Helper()
	eventually.NoError(t, 10*time.Second, fmt.Sprintf("invalid counts %v", want), func() error {
		if got := l.Invalid(); !maps.Equal(got, want) {
			return fmt.Errorf("invalid counts %v", got)
		}
		return nil
	})
}

// TestTrapDropped: every kind of invalid packet is dropped, counted under
// its reason, and never becomes a trap.
func TestTrapDropped(t *testing.T) {
	l, ch := startV3Listener(t)
	byName := map[string]TrapUser{}
	for _, u := range testTrapUsers.Users {
		byName[u.Name] = u
	}
	v2c := func(pdu gosnmp.PDUType, vars []gosnmp.SnmpPDU) []byte {
		p := &gosnmp.SnmpPacket{Version: gosnmp.Version2c, Community: "public", PDUType: pdu, RequestID: 7, Variables: vars}
		b, err := p.MarshalMsg()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	v3trap := func(u TrapUser) {
		t.Helper()
		c := v3Sender(t, l, u, senderEngineID)
		if _, err := c.SendTrap(gosnmp.SnmpTrap{Variables: linkDownVars(1)}); err != nil {
			t.Fatalf("SendTrap: %v", err)
		}
	}
	want := map[string]uint64{}
	step := func(reason string, send func()) {
		t.Helper()
		send()
		want[reason]++
		waitInvalid(t, l, want)
	}

	step("no_trap_oid", func() { sendRaw(t, l, v2c(gosnmp.SNMPv2Trap, nil)) })
	step("no_trap_oid", func() {
		sendRaw(t, l, v2c(gosnmp.SNMPv2Trap, []gosnmp.SnmpPDU{{Name: "." + oidSysUpTime, Type: gosnmp.TimeTicks, Value: uint32(5)}}))
	})
	step("no_trap_oid", func() { sendRaw(t, l, v2c(gosnmp.InformRequest, nil)) })
	step("not_notification", func() {
		sendRaw(t, l, v2c(gosnmp.GetRequest, []gosnmp.SnmpPDU{{Name: "." + oidSysUpTime, Type: gosnmp.Null}}))
	})
	step("malformed", func() { sendRaw(t, l, []byte("hello, trap port")) })
	good := v2c(gosnmp.SNMPv2Trap, linkDownVars(9))
	step("malformed", func() { sendRaw(t, l, good[:len(good)-4]) })

	step("unknown_user", func() { v3trap(TrapUser{Name: "nobody", AuthProtocol: "SHA", AuthPassword: "whatever1"}) })
	wrongAuth := byName["shaaes"]
	wrongAuth.AuthPassword = "not-the-password"
	step("bad_auth", func() { v3trap(wrongAuth) })
	wrongPriv := byName["shaaes"]
	wrongPriv.PrivPassword = "not-the-password"
	step("decrypt_failed", func() { v3trap(wrongPriv) })
	wrongDES := byName["md5des"]
	wrongDES.PrivPassword = "not-the-password"
	step("decrypt_failed", func() { v3trap(wrongDES) })
	lower := byName["shaaes"]
	lower.PrivProtocol, lower.PrivPassword = "", ""
	step("bad_security_level", func() { v3trap(lower) })
	noAuth := TrapUser{Name: "shaonly"}
	step("bad_security_level", func() { v3trap(noAuth) })

	// A valid trap still gets through, and nothing dropped became a trap.
	sendRaw(t, l, good)
	if got := waitTrap(t, ch); got.Uptime != 9 {
		t.Errorf("after the drops got trap %+v, want the one with uptime 9", got)
	}
	select {
	case tr := <-ch:
		t.Errorf("a dropped packet became trap %+v", tr)
	default:
	}
}

// TestTrapV3NoUsers: without SetV3 every v3 message is dropped as of an
// unknown user.
func TestTrapV3NoUsers(t *testing.T) {
	l, _ := startTrapListener(t)
	c := v3Sender(t, l, testTrapUsers.Users[2], senderEngineID)
	if _, err := c.SendTrap(gosnmp.SnmpTrap{Variables: linkDownVars(1)}); err != nil {
		t.Fatal(err)
	}
	waitInvalid(t, l, map[string]uint64{"unknown_user": 1})
}

// TestTrapV3NetSNMP sends v3 traps and informs with net-snmp's snmptrap
// and snmpinform, at each security level and with each family of
// protocols: interoperability with the reference implementation.
func TestTrapV3NetSNMP(t *testing.T) {
	bin := needTool(t, "snmptrap")
	inform := needTool(t, "snmpinform")
	l, ch := startV3Listener(t)
	target := "127.0.0.1:" + strconv.Itoa(l.Addr().(*net.UDPAddr).Port)
	dir := t.TempDir()
	run := func(bin string, args ...string) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		// Keep net-snmp's persistent files and configuration out of /var/lib/snmp.
		cmd.Env = append(os.Environ(), "SNMP_PERSISTENT_DIR="+dir, "SNMPCONFPATH="+dir, "MIBS=", "MIBDIRS="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", filepath.Base(bin), args, err, out)
		}
	}
	netsnmp := map[string]string{"SHA256": "SHA-256", "SHA512": "SHA-512", "AES256": "AES-256", "AES256C": "AES-256-C"}
	name := func(p string) string {
		if n, ok := netsnmp[p]; ok {
			return n
		}
		return p
	}
	for i, u := range testTrapUsers.Users {
		t.Run(u.Name, func(t *testing.T) {
			sec := []string{"-v", "3", "-u", u.Name, "-l", "noAuthNoPriv", "-r", "1", "-t", "2"}
			if u.AuthProtocol != "" {
				sec = append(sec, "-a", name(u.AuthProtocol), "-A", u.AuthPassword)
				sec[5] = "authNoPriv"
			}
			if u.PrivProtocol != "" {
				sec = append(sec, "-x", name(u.PrivProtocol), "-X", u.PrivPassword)
				sec[5] = "authPriv"
			}
			vb := []string{"1.3.6.1.2.1.2.2.1.1.3", "i", "3"}
			uptime := strconv.Itoa(500 + i)
			run(bin, append(append(append([]string{}, sec...), "-e", "0x80001f880501020304", target, uptime, oidLinkDown), vb...)...)
			got := waitTrap(t, ch)
			if got.Version != meshmon.SNMPv3 || got.User != u.Name || got.OID != oidLinkDown || got.Uptime != uint32(500+i) || got.Labels["if_index"] != "3" {
				t.Errorf("snmptrap -v3 converted to %+v", got)
			}
			run(inform, append(append(append([]string{}, sec...), target, strconv.Itoa(600+i), oidLinkDown), vb...)...)
			got = waitTrap(t, ch)
			if got.Version != meshmon.SNMPv3 || got.User != u.Name || got.Uptime != uint32(600+i) {
				t.Errorf("snmpinform -v3 converted to %+v", got)
			}
		})
	}
	if inv := l.Invalid(); len(inv) != 0 {
		t.Errorf("invalid counts %v", inv)
	}
}

// authProto and privProto are gosnmp's protocols of meshmon's names.
func authProto(name string) gosnmp.SnmpV3AuthProtocol {
	p, _ := snmpv3.AuthProtocol(name)
	return p
}

func privProto(name string) gosnmp.SnmpV3PrivProtocol {
	p, _ := snmpv3.PrivProtocol(name)
	return p
}
