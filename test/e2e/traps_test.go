//go:build e2e

package e2e

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/internal/eventually"
)

// TestSnmptrapV3 runs a poller with --trap-users-file, sends it SNMPv3
// traps and informs with net-snmp's snmptrap and snmpinform, and finds them
// as events; a trap with a wrong pass phrase and a packet that is not SNMP
// are dropped and shown by `meshmon status`.
func TestSnmptrapV3(t *testing.T) {
	bin := need(t, "snmptrap")
	inform := need(t, "snmpinform")
	users := filepath.Join(t.TempDir(), "trap-users.yaml")
	doc := "users:\n  - name: noc\n    auth_protocol: SHA256\n    auth_password: e2e-auth-pass\n    priv_protocol: AES\n    priv_password: e2e-priv-pass\n"
	if err := os.WriteFile(users, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newSite(t, "trapsv3", "--trap-users-file", users)
	target := "127.0.0.1:" + strconv.Itoa(s.trapPort)
	netsnmp := t.TempDir()
	send := func(bin, authPass string, args ...string) error {
		t.Helper()
		all := append([]string{"-v", "3", "-u", "noc", "-l", "authPriv", "-a", "SHA-256", "-A", authPass, "-x", "AES", "-X", "e2e-priv-pass", "-r", "1", "-t", "2"}, args...)
		cmd := exec.Command(bin, all...)
		cmd.Env = append(os.Environ(), "SNMP_PERSISTENT_DIR="+netsnmp, "SNMPCONFPATH="+netsnmp, "MIBS=", "MIBDIRS="+netsnmp)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Logf("%s: %s", filepath.Base(bin), out)
		}
		return err
	}
	if err := send(bin, "e2e-auth-pass", "-e", "0x80001f880501020304", target, "4242", "1.3.6.1.6.3.1.1.5.3", "1.3.6.1.2.1.2.2.1.1.3", "i", "3"); err != nil {
		t.Fatalf("snmptrap: %v", err)
	}
	ev := s.waitEvent("ev.trapsv3.*.trap", 20*time.Second, func(ev meshmon.Event) bool {
		return ev.Data.Trap != nil && ev.Data.Trap.Uptime == 4242
	})
	if tr := ev.Data.Trap; tr.Version != "3" || tr.User != "noc" || tr.OID != "1.3.6.1.6.3.1.1.5.3" || tr.Labels["if_index"] != "3" {
		t.Errorf("v3 trap: %+v", tr)
	}
	// An inform: snmpinform discovers the poller's engine, then is answered.
	if err := send(inform, "e2e-auth-pass", target, "4343", "1.3.6.1.6.3.1.1.5.1"); err != nil {
		t.Fatalf("snmpinform: %v", err)
	}
	s.waitEvent("ev.trapsv3.*.trap", 20*time.Second, func(ev meshmon.Event) bool {
		return ev.Data.Trap != nil && ev.Data.Trap.Uptime == 4343 && ev.Data.Trap.Version == "3"
	})

	// A wrong pass phrase and a packet that is not SNMP are dropped and counted.
	if err := send(bin, "wrong-auth-pass", "-e", "0x80001f880501020304", target, "4444", "1.3.6.1.6.3.1.1.5.3"); err != nil {
		t.Fatalf("snmptrap with a wrong pass phrase: %v", err)
	}
	c, err := net.Dial("udp", target)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("not snmp at all")); err != nil {
		t.Fatal(err)
	}
	c.Close()
	eventually.True(t, 20*time.Second, "status to show the dropped packets", func() bool {
		return strings.Contains(s.cli("status"), "traps dropped by p1: bad_auth 1, malformed 1")
	})
	var st struct {
		Pollers []meshmon.PollerInfo `json:"pollers"`
	}
	if err := json.Unmarshal([]byte(s.cli("status", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Pollers) != 1 || st.Pollers[0].TrapsInvalid["bad_auth"] != 1 || st.Pollers[0].TrapsInvalid["malformed"] != 1 {
		t.Errorf("status --json pollers: %+v", st.Pollers)
	}
	for _, ev := range s.events("ev.trapsv3.*.trap") {
		if ev.Data.Trap.Uptime == 4444 {
			t.Errorf("the trap with a wrong pass phrase became an event: %+v", ev.Data.Trap)
		}
	}
}
