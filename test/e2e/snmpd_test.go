//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/internal/eventually"
)

// snmpd is a real net-snmp agent on a loopback UDP port.
type snmpd struct {
	t    *testing.T
	bin  string
	port int
	dir  string
	conf string
	p    *proc
}

func newSnmpd(t *testing.T) *snmpd {
	bin := need(t, "snmpd")
	need(t, "snmpget")
	s := &snmpd{t: t, bin: bin, port: freePort(t, "udp"), dir: t.TempDir()}
	t.Setenv("MIBS", "") // no MIB loading: quiet and fast
	// Not s.dir: snmpd rewrites <persistent dir>/snmpd.conf at exit.
	t.Setenv("SNMP_PERSISTENT_DIR", filepath.Join(s.dir, "persist"))
	s.conf = filepath.Join(s.dir, "snmpd.conf")
	conf := (`rocommunity public 127.0.0.1
sysName meshmon-e2e-snmpd
sysLocation e2e
createUser e2epriv SHA "e2e-auth-pass" AES "e2e-priv-pass"
rouser e2epriv priv
`)
	if err := os.WriteFile(s.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	s.start()
	return s
}

func (s *snmpd) start() {
	s.t.Helper()
	s.p = start(s.t, "snmpd", s.bin, "-f", "-Lo", "-C", "-c", s.conf, "-p", filepath.Join(s.dir, "snmpd.pid"),
		"udp:127.0.0.1:"+strconv.Itoa(s.port))
	eventually.True(s.t, 20*time.Second, "snmpd to answer", func() bool {
		o, err := execOut("snmpget", "-v2c", "-c", "public", "-t", "0.3", "-r", "0", "127.0.0.1:"+strconv.Itoa(s.port), "1.3.6.1.2.1.1.5.0")
		return err == nil && strings.Contains(o, "meshmon-e2e-snmpd")
	})
}

// TestRealSnmpd polls a real net-snmp agent with v2c and v3 authPriv, sees
// its real sysName and interface counters on mx.>, sees it go away and come
// back as events, and turns a wrong community and a wrong v3 password into
// snmp_unreachable events with a reason.
func TestRealSnmpd(t *testing.T) {
	d := newSnmpd(t)
	s := newSite(t, "e2e")
	port := strconv.Itoa(d.port)
	common := []string{"--address", "127.0.0.1", "--snmp-port", port, "--checks", "snmp", "--interval", "1s", "--probe-timeout", "300ms", "--retries", "0"}
	s.cli(append([]string{"device", "add", "rtr-v2c", "--community", "public"}, common...)...)
	s.cli(append([]string{"device", "add", "rtr-v3", "--snmp-version", "3", "--v3-user", "e2epriv",
		"--auth-proto", "SHA", "--auth-pass", "e2e-auth-pass", "--priv-proto", "AES", "--priv-pass", "e2e-priv-pass"}, common...)...)
	s.cli(append([]string{"device", "add", "bad-community", "--community", "not-the-community"}, common...)...)
	s.cli(append([]string{"device", "add", "bad-v3-pass", "--snmp-version", "3", "--v3-user", "e2epriv",
		"--auth-proto", "SHA", "--auth-pass", "wrong-auth-pass", "--priv-proto", "AES", "--priv-pass", "e2e-priv-pass"}, common...)...)

	for _, dev := range []string{"rtr-v2c", "rtr-v3"} {
		eventually.True(t, 30*time.Second, dev+" system and interface samples", func() bool {
			var sys, ifs meshmon.Sample
			sm := s.streamMsgs("METRICS", "mx.e2e."+dev+".>")
			for _, m := range sm {
				var x meshmon.Sample
				if json.Unmarshal(m.Data, &x) != nil {
					continue
				}
				switch x.Check {
				case "system":
					sys = x
				case "if":
					ifs = x
				}
			}
			if sys.Labels["sys_name"] != "meshmon-e2e-snmpd" {
				return false
			}
			for _, i := range ifs.Interfaces {
				if i.Name == "lo" && i.InOctets > 0 {
					return true
				}
			}
			return false
		})
	}

	isKind := func(kind string) func(meshmon.Event) bool {
		return func(ev meshmon.Event) bool { return ev.Data.Kind == kind }
	}
	ev := s.waitEvent("ev.e2e.bad-community.snmp_unreachable", 30*time.Second, isKind(meshmon.KindSNMPUnreachable))
	if ev.Data.Reason == "" {
		t.Errorf("wrong community: event has no reason: %+v", ev.Data)
	}
	ev = s.waitEvent("ev.e2e.bad-v3-pass.snmp_unreachable", 30*time.Second, isKind(meshmon.KindSNMPUnreachable))
	if !strings.Contains(strings.ToLower(ev.Data.Reason), "auth") {
		t.Errorf("wrong v3 password: reason %q does not say authentication", ev.Data.Reason)
	}

	d.p.stop()
	for _, dev := range []string{"rtr-v2c", "rtr-v3"} {
		ev := s.waitEvent("ev.e2e."+dev+".snmp_unreachable", 30*time.Second, isKind(meshmon.KindSNMPUnreachable))
		if ev.Data.Severity != meshmon.SeverityMajor || ev.Data.Device != dev || ev.ID == "" || ev.SpecVersion != "1.0" {
			t.Errorf("%s: unexpected unreachable event %+v", dev, ev)
		}
	}
	d.start()
	for _, dev := range []string{"rtr-v2c", "rtr-v3"} {
		s.waitEvent("ev.e2e."+dev+".snmp_reachable", 30*time.Second, isKind(meshmon.KindSNMPReachable))
	}
}

// TestSnmptrap sends real traps with net-snmp's snmptrap, v1 and v2c, to the
// poller's trap port and finds them as events.
func TestSnmptrap(t *testing.T) {
	bin := need(t, "snmptrap")
	s := newSite(t, "traps")
	s.cli("device", "add", "trapper", "--address", "127.0.0.1", "--checks", "icmp", "--interval", "1m")
	target := "127.0.0.1:" + strconv.Itoa(s.trapPort)
	// The poller learns the device from the inventory; until then a trap is
	// filed under ip-127-0-0-1. Either way it is kept.
	if o, err := execOut(bin, "-v", "2c", "-c", "public", target, "", "1.3.6.1.6.3.1.1.5.3", "1.3.6.1.2.1.2.2.1.1.3", "i", "3"); err != nil {
		t.Fatalf("snmptrap v2c: %v: %s", err, o)
	}
	ev := s.waitEvent("ev.traps.*.trap", 20*time.Second, func(ev meshmon.Event) bool {
		return ev.Data.Trap != nil && strings.TrimPrefix(ev.Data.Trap.OID, ".") == "1.3.6.1.6.3.1.1.5.3"
	})
	if ev.Data.Trap.Version != "2c" || ev.Data.Trap.From != "127.0.0.1" {
		t.Errorf("v2c trap: got version %q from %q", ev.Data.Trap.Version, ev.Data.Trap.From)
	}
	if o, err := execOut(bin, "-v", "1", "-c", "public", target, "1.3.6.1.4.1.8072.3.2.10", "127.0.0.1", "3", "0", "", "1.3.6.1.2.1.2.2.1.1.2", "i", "2"); err != nil {
		t.Fatalf("snmptrap v1: %v: %s", err, o)
	}
	ev = s.waitEvent("ev.traps.*.trap", 20*time.Second, func(ev meshmon.Event) bool {
		return ev.Data.Trap != nil && ev.Data.Trap.Version == "1"
	})
	if ev.Data.Trap.Generic != 3 || ev.Data.Kind != meshmon.KindTrap {
		t.Errorf("v1 trap: got generic %d kind %s", ev.Data.Trap.Generic, ev.Data.Kind)
	}
}

// TestStatusAndTail checks the scripting side of the CLI: status --json
// reports the peer, its streams and the poller; events tail replays history
// as JSON and stops with --no-follow; device list --json hides secrets.
func TestStatusAndTail(t *testing.T) {
	bin := need(t, "snmptrap")
	s := newSite(t, "cli")
	s.cli("device", "add", "sw1", "--address", "127.0.0.1", "--checks", "snmp", "--community", "topsecret", "--snmp-port", "9", "--interval", "1s", "--probe-timeout", "200ms")
	// Port 9 on loopback has no agent: the device is unreachable, which is an event.
	s.waitEvent("ev.cli.sw1.snmp_unreachable", 30*time.Second, func(meshmon.Event) bool { return true })
	if o, err := execOut(bin, "-v", "2c", "-c", "public", "127.0.0.1:"+strconv.Itoa(s.trapPort), "", "1.3.6.1.6.3.1.1.5.1"); err != nil {
		t.Fatalf("snmptrap: %v: %s", err, o)
	}
	s.waitEvent("ev.cli.sw1.trap", 20*time.Second, func(meshmon.Event) bool { return true })

	var st struct {
		Peer    struct{ Server, Version string }
		Streams []struct {
			Name     string
			Messages uint64
		}
		Devices int
		Pollers []struct{ Name, Site string }
	}
	eventually.True(t, 20*time.Second, "status to list the poller", func() bool {
		if err := json.Unmarshal([]byte(s.cli("status", "--json")), &st); err != nil {
			t.Fatalf("status --json: %v", err)
		}
		return len(st.Pollers) == 1
	})
	if st.Pollers[0].Name != "p1" || st.Pollers[0].Site != "cli" || st.Devices != 1 || st.Peer.Version == "" {
		t.Errorf("status: %+v", st)
	}
	found := false
	for _, x := range st.Streams {
		found = found || x.Name == "EVENTS" && x.Messages >= 2
	}
	if !found {
		t.Errorf("status: no EVENTS stream with the events: %+v", st.Streams)
	}

	out := s.cli("events", "tail", "--since", "1h", "--no-follow", "--json", "--device", "sw1")
	var kinds []string
	for _, l := range lines(out) {
		var ev meshmon.Event
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("tail --json line %q: %v", l, err)
		}
		kinds = append(kinds, ev.Data.Kind)
	}
	if len(kinds) < 2 || kinds[0] != meshmon.KindSNMPUnreachable {
		t.Errorf("tail replay: kinds %v", kinds)
	}
	human := s.cli("events", "tail", "--since", "1h", "--no-follow", "--kind", "trap")
	if !strings.Contains(human, "cli/sw1") || !strings.Contains(human, "coldStart") {
		t.Errorf("tail human output:\n%s", human)
	}

	list := s.cli("device", "list", "--json")
	if strings.Contains(list, "topsecret") || !strings.Contains(list, `"sw1"`) {
		t.Errorf("device list --json leaks the community or misses the device:\n%s", list)
	}
}
