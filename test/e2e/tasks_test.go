//go:build e2e

package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/sim"
)

// TestTasksFromCentralCLI runs a central peer in operator mode, a site hq
// of tenant acme that dials it, a poller at hq and simulated agents, all
// real processes, and from central, with the meshmon CLI and an admin
// credential, adds, lists, shows, imports and removes devices of hq's
// inventory and runs tasks on them, and interrupts a discovery. With
// the stock nats CLI as an attacker it checks that a NOC and a poller
// credential may neither send a task nor read the replies, that an admin
// can neither send as another user nor have the site record another
// requester than itself, that a refused request is recorded, and with the
// meshmon CLI that another tenant's admin reaches no site of acme's.
func TestTasksFromCentralCLI(t *testing.T) {
	natsBin := need(t, "nats")
	dir := t.TempDir()
	_, keys, curl, lport := startOperatorCentral(t, dir)
	cli := func(args ...string) string { return mustRun(t, append([]string{"--server", curl}, args...)...) }
	cli("tenant", "create", "acme", "--keys", keys)
	cli("tenant", "create", "beta", "--keys", keys)
	token := filepath.Join(dir, "hq.token")
	cli("site", "add", "hq", "--tenant", "acme", "--keys", keys, "--central", "nats-leaf://127.0.0.1:"+strconv.Itoa(lport), "--token-file", token)
	port := freePort(t, "tcp")
	site := runMeshmon(t, "hq", "peer", "run", "--role", "site", "--name", "hq-peer", "--join-file", token,
		"--listen", "127.0.0.1:"+strconv.Itoa(port), "--data-dir", filepath.Join(dir, "hq"))
	site.waitOutput(`peer hq-peer ready`, peerReady)
	hqURL := "nats://127.0.0.1:" + strconv.Itoa(port)
	creds := map[string]string{}
	for _, u := range [][]string{{"acme", "admin", "admin", ""}, {"acme", "noc", "noc", ""}, {"acme", "p1", "poller", "hq"}, {"beta", "badmin", "admin", ""}} {
		f := filepath.Join(dir, u[1]+".creds")
		args := []string{"tenant", "creds", u[0], "--keys", keys, "--role", u[2], "--user", u[1], "--out", f}
		if u[3] != "" {
			args = append(args, "--site", u[3])
		}
		cli(args...)
		creds[u[1]] = f
	}
	sm := startSim(t, "tk", "127.83.0.1", 2)
	a := sm.Agents()[0]
	admin := func(args ...string) (string, string, int) {
		return run(t, append([]string{"--server", curl, "--creds", creds["admin"]}, args...)...)
	}
	// The device goes into hq's inventory from central.
	eventually.True(t, 30*time.Second, "device add --site hq from central", func() bool {
		_, _, code := admin("device", "add", "--site", "hq", a.Name(), "--address", a.Addr().Addr().String(),
			"--checks", "snmp", "--snmp-port", strconv.Itoa(int(a.Addr().Port())))
		return code == 0
	})
	if out, _, code := admin("device", "list", "--site", "hq", "--json"); code != 0 || !strings.Contains(out, a.Name()) {
		t.Fatalf("device list --site hq from central: exit %d\n%s", code, out)
	}
	deviceSite(t, admin, dir, a, sm.Agents()[1])
	poller := runMeshmon(t, "poller-hq", "--server", hqURL, "--creds", creds["p1"], "poller", "run", "--data-dir", filepath.Join(dir, "p1"))
	poller.waitOutput(`poller started`, 30*time.Second)

	var res struct {
		Poller  string `json:"poller"`
		Samples []struct {
			Check string `json:"check"`
		} `json:"samples"`
	}
	eventually.True(t, 30*time.Second, "task poll-now from central", func() bool {
		out, _, code := admin("task", "poll-now", "--site", "hq", a.Name(), "--json")
		return code == 0 && json.Unmarshal([]byte(out), &res) == nil && len(res.Samples) > 0
	})
	if res.Poller != "p1" {
		t.Fatalf("poll-now answered by %q, want p1", res.Poller)
	}
	if out, stderr, code := admin("task", "walk", "--site", "hq", a.Name(), "1.3.6.1.2.1.1"); code != 0 || !strings.Contains(out, "1.3.6.1.2.1.1.5.0 = OctetString: "+a.Name()) {
		t.Fatalf("task walk: exit %d\n%s\n%s", code, out, stderr)
	}

	// Attackers. The stock nats CLI with a NOC's and a poller's
	// credential, at central and at the site: no task sent, not even on
	// their own user's subject, and no reply read.
	ping := `{"id":"x","verb":"ping","site":"hq","address":"127.0.0.1"}`
	for _, c := range []struct{ who, url, creds, user string }{
		{"noc at central", curl, creds["noc"], "noc"}, {"poller at central", curl, creds["p1"], "p1"},
		{"noc at hq", hqURL, creds["noc"], "noc"}, {"poller at hq", hqURL, creds["p1"], "p1"},
		{"noc as admin", curl, creds["noc"], "admin"},
	} {
		want := "Permissions Violation"
		if c.who == "poller at central" {
			want = "Authorization Violation" // central refuses it at connect
		}
		out, ok := natsCLI(t, natsBin, "--server", c.url, "--creds", c.creds, "pub", "ctl.hq.req."+c.user+".ping", ping)
		if ok || !strings.Contains(out, want) {
			t.Errorf("%s published a task request: %s", c.who, out)
		}
	}
	out, ok := natsCLI(t, natsBin, "--server", curl, "--creds", creds["noc"], "sub", "ctl.hq.reply.>", "--count", "1", "--timeout", "2s")
	if ok || !strings.Contains(out, "Permissions Violation") {
		t.Errorf("noc subscribed to task replies: %s", out)
	}
	// The admin may not send as another user, nor as the ops realm; what
	// it sends on its own subject is recorded as its own, whatever the
	// request says.
	for _, subj := range []string{"ctl.hq.req.noc.ping", "ctl.hq.ops.admin.ping", "ctl.hq.reply.x"} {
		if out, ok := natsCLI(t, natsBin, "--server", curl, "--creds", creds["admin"], "pub", subj, ping); ok || !strings.Contains(out, "Permissions Violation") {
			t.Errorf("admin published on %s: %s", subj, out)
		}
	}
	if out, ok := natsCLI(t, natsBin, "--server", curl, "--creds", creds["admin"], "pub", "ctl.hq.req.admin.ping",
		`{"id":"spoof1","verb":"ping","site":"hq","by":"noc","address":"127.0.0.1"}`); !ok {
		t.Fatalf("admin's own task request: %s", out)
	}
	// Refused at the site (too large), and recorded so.
	if out, ok := natsCLI(t, natsBin, "--server", curl, "--creds", creds["admin"], "pub", "ctl.hq.req.admin.discover",
		`{"id":"big1","verb":"discover","site":"hq","cidr":"10.0.0.0/16"}`); !ok {
		t.Fatalf("admin's discover request: %s", out)
	}
	var audit map[string]string
	eventually.True(t, 30*time.Second, "the audit events of spoof1 and big1 at central", func() bool {
		audit = taskAudit(admin)
		return audit["spoof1"] != "" && audit["big1"] != ""
	})
	if audit["spoof1"] != "admin ok " {
		t.Errorf("a ping sent by admin saying by noc recorded as %q", audit["spoof1"])
	}
	if !strings.HasPrefix(audit["big1"], "admin refused cidr \"10.0.0.0/16\" has 65536 addresses") {
		t.Errorf("a discovery of a /16 without --allow-large recorded as %q", audit["big1"])
	}
	// Another tenant's admin, with the stock CLI: its requests stay in its
	// own account, where no site hq answers, and it reads none of acme's
	// replies.
	if out, _ := natsCLI(t, natsBin, "--server", curl, "--creds", creds["badmin"], "req", "ctl.hq.req.badmin.ping", ping, "--timeout", "2s"); !strings.Contains(out, "No responders") {
		t.Errorf("beta's admin's request on ctl.hq.req.badmin.ping: %s; want no responders", out)
	}
	// The ops account's user runs tasks at acme's hq with --tenant, as
	// itself: recorded as ops:olga; it cannot send as another ops user
	// or as a tenant's user.
	opsCreds := filepath.Join(dir, "olga.creds")
	cli("tenant", "creds", "--ops", "--keys", keys, "--user", "olga", "--out", opsCreds)
	var get struct {
		Varbinds []struct{ Value string } `json:"varbinds"`
	}
	out, stderr, code := run(t, "--server", curl, "--creds", opsCreds, "task", "snmp-get", "--tenant", "acme", "--site", "hq", "--json",
		"--snmp-port", strconv.Itoa(int(a.Addr().Port())), a.Addr().Addr().String(), "1.3.6.1.2.1.1.5.0")
	if code != 0 || json.Unmarshal([]byte(out), &get) != nil || len(get.Varbinds) != 1 || get.Varbinds[0].Value != a.Name() {
		t.Fatalf("snmp-get by ops user olga at acme's hq: exit %d\n%s\n%s", code, out, stderr)
	}
	if _, stderr, code := run(t, "--server", curl, "--creds", opsCreds, "task", "ping", "--site", "hq", "127.0.0.1"); code != 1 || !strings.Contains(stderr, "--tenant is required") {
		t.Errorf("task ping by olga without --tenant: exit %d, %q", code, stderr)
	}
	for _, subj := range []string{"tenants.acme.ctl.hq.ops.ivan.ping", "tenants.acme.ctl.hq.req.admin.ping", "tenants.acme.ctl.hq.reply.ops.olga.x"} {
		if out, ok := natsCLI(t, natsBin, "--server", curl, "--creds", opsCreds, "pub", subj, ping); ok || !strings.Contains(out, "Permissions Violation") {
			t.Errorf("ops user olga published on %s: %s", subj, out)
		}
	}
	eventually.NoError(t, 30*time.Second, "olga's snmp-get recorded at central", func() error {
		out, stderr, code := admin("events", "tail", "--site", "hq", "--since", "1h", "--no-follow", "--json")
		if code != 0 || !strings.Contains(out, `"by":"ops:olga"`) || !strings.Contains(out, `"verb":"snmp-get"`) {
			return fmt.Errorf("exit %d\n%s\n%s", code, out, stderr)
		}
		return nil
	})

	// The meshmon CLI says so in one line.
	_, stderr, code = run(t, "--server", curl, "--creds", creds["noc"], "task", "ping", "--site", "hq", "127.0.0.1")
	if code != 1 || !strings.Contains(stderr, "Permissions Violation") {
		t.Errorf("task ping with a NOC credential: exit %d, %q", code, stderr)
	}
	// Another tenant's admin: its account has no site hq; nothing answers.
	_, stderr, code = run(t, "--server", curl, "--creds", creds["badmin"], "task", "ping", "--site", "hq", "127.0.0.1", "--reach", "2s")
	if code != 1 || !strings.Contains(stderr, "site hq is offline (no reply in 2s)") {
		t.Errorf("task ping by beta's admin at acme's site: exit %d, %q", code, stderr)
	}
	_, stderr, code = run(t, "--server", curl, "--creds", creds["badmin"], "--timeout", "2s", "device", "list", "--site", "hq")
	if code != 1 || !strings.Contains(stderr, "site hq is offline") {
		t.Errorf("device list --site hq by beta's admin: exit %d, %q", code, stderr)
	}

	interruptDiscovery(t, curl, creds["admin"], admin)

	// The site stopped: the admin's task fails within its reach, clearly.
	site.stop()
	start := time.Now()
	_, stderr, code = admin("task", "poll-now", "--site", "hq", a.Name(), "--reach", "2s")
	if code != 1 || !strings.Contains(stderr, "site hq is offline") || time.Since(start) > 10*time.Second {
		t.Errorf("poll-now with hq down: exit %d after %s, %q", code, time.Since(start), stderr)
	}
}

// cliFunc runs a meshmon command and returns its stdout, stderr and exit code.
type cliFunc func(args ...string) (string, string, int)

// taskAudit reads hq's task audit events at central: by task id, "<by>
// <result> <error>" (nil when the command fails).
func taskAudit(admin cliFunc) map[string]string {
	out, _, code := admin("events", "tail", "--site", "hq", "--since", "1h", "--no-follow", "--json")
	if code != 0 {
		return nil
	}
	audit := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var ev struct {
			Data struct {
				Task *struct{ ID, By, Result, Error string } `json:"task"`
			} `json:"data"`
		}
		if json.Unmarshal([]byte(l), &ev) == nil && ev.Data.Task != nil {
			a := ev.Data.Task
			audit[a.ID] = a.By + " " + a.Result + " " + a.Error
		}
	}
	return audit
}

// deviceSite: from central, `device show`, `import` and `rm --site hq`
// work on hq's inventory across its link: a shows as added (its community
// masked), b is imported from a file with its community, shown, removed,
// and then not found.
func deviceSite(t *testing.T, admin cliFunc, dir string, a, b *sim.Agent) {
	t.Helper()
	var d meshmon.Device
	out, stderr, code := admin("device", "show", "--site", "hq", a.Name(), "--json")
	if code != 0 || json.Unmarshal([]byte(out), &d) != nil || d.Name != a.Name() || d.Address != a.Addr().Addr().String() || d.SNMP == nil || d.SNMP.Community == "public" {
		t.Fatalf("device show --site hq %s from central: exit %d, %+v\n%s%s", a.Name(), code, d, out, stderr)
	}
	file := filepath.Join(dir, "import.json")
	body, err := json.Marshal([]meshmon.Device{b.Device(time.Minute, time.Second, "e2e-secret")})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, body, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, stderr, code := admin("device", "import", "--site", "hq", file); code != 0 || !strings.Contains(out, "1 devices imported") {
		t.Fatalf("device import --site hq from central: exit %d\n%s%s", code, out, stderr)
	}
	out, stderr, code = admin("device", "show", "--site", "hq", b.Name(), "--json", "--show-secrets")
	if code != 0 || json.Unmarshal([]byte(out), &d) != nil || d.Name != b.Name() || d.SNMP == nil || d.SNMP.Community != "e2e-secret" {
		t.Fatalf("device show --site hq %s --show-secrets after its import: exit %d, %+v\n%s%s", b.Name(), code, d, out, stderr)
	}
	if out, stderr, code := admin("device", "rm", "--site", "hq", b.Name()); code != 0 {
		t.Fatalf("device rm --site hq %s from central: exit %d\n%s%s", b.Name(), code, out, stderr)
	}
	if _, stderr, code := admin("device", "show", "--site", "hq", b.Name()); code != 1 || !strings.Contains(stderr, "device "+b.Name()+" not found") {
		t.Fatalf("device show --site hq %s after its rm: exit %d, %q", b.Name(), code, stderr)
	}
	if out, _, code := admin("device", "list", "--site", "hq", "--json"); code != 0 || strings.Contains(out, b.Name()) || !strings.Contains(out, a.Name()) {
		t.Fatalf("device list --site hq after rm of %s: exit %d\n%s", b.Name(), code, out)
	}
}

// interruptDiscovery: Ctrl-C of a running `task discover` stops it: the
// CLI exits 1 saying it asked the site to stop the task, and the task's
// audit event at central says cancelled.
func interruptDiscovery(t *testing.T, curl, creds string, admin cliFunc) {
	t.Helper()
	p := runMeshmon(t, "discover-ctrl-c", "--server", curl, "--creds", creds, "task", "discover", "--site", "hq",
		"--cidr", "127.83.0.0/24", "--rate", "5") // 254 addresses: 50 s at least
	p.waitOutput(`discover 127\.83\.0\.0/24 at hq: (icmp|snmp) \d+/254`, 30*time.Second)
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("task discover still runs 15s after SIGINT:\n%s", tail(p.out.String(), 20))
	}
	out := p.out.String()
	m := regexp.MustCompile(`task (\S+) interrupted; asked site hq to stop it`).FindStringSubmatch(out)
	var ee *exec.ExitError
	if !errors.As(p.err, &ee) || ee.ExitCode() != 1 || m == nil {
		t.Fatalf("task discover after SIGINT: %v, want exit 1 and \"interrupted; asked site hq to stop it\":\n%s", p.err, tail(out, 20))
	}
	eventually.True(t, 30*time.Second, "the interrupted discovery's audit event at central", func() bool {
		return taskAudit(admin)[m[1]] != ""
	})
	if got := taskAudit(admin)[m[1]]; !strings.HasPrefix(got, "admin cancelled") {
		t.Errorf("the interrupted discovery %s recorded as %q, want admin cancelled", m[1], got)
	}
}
