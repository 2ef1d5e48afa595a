//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/internal/wan"
	"github.com/meshmon/meshmon/sim"
	"github.com/meshmon/meshmon/tenancy"
)

// natsCLI runs the stock nats CLI and returns its combined output and
// whether it succeeded. With a tenant user's --creds it takes replies on
// the user's own inbox prefix, the only one the user may read.
func natsCLI(t *testing.T, bin string, args ...string) (string, bool) {
	t.Helper()
	args = withInboxPrefix(args)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	began := time.Now()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if d := time.Since(began); d > 1500*time.Millisecond {
		t.Logf("SLOW %s: nats %s", d.Round(time.Millisecond), strings.Join(args, " "))
	}
	return string(out), err == nil
}

// withInboxPrefix adds --inbox-prefix _INBOX.<user> to nats CLI args that
// name a tenant user's --creds file.
func withInboxPrefix(args []string) []string {
	i := slices.Index(args, "--creds")
	if i < 0 || i+1 >= len(args) || slices.Contains(args, "--inbox-prefix") {
		return args
	}
	b, err := os.ReadFile(args[i+1])
	if err != nil {
		return args
	}
	id, err := tenancy.CredsIdentity(b)
	if err != nil || id.Role == "" {
		return args
	}
	return append([]string{"--inbox-prefix", tenancy.InboxPrefix(id.User)}, args...)
}

// startOperatorCentral runs a central peer c1 in operator mode, a real
// process, on the key store it makes with meshmon init in dir, and returns
// it with the key store, its client URL and its leaf port, once it is ready.
func startOperatorCentral(t *testing.T, dir string) (central *proc, keys, url string, leafPort int) {
	t.Helper()
	keys = filepath.Join(dir, "keys")
	mustRun(t, "init", "--keys", keys)
	cport, lport := freePort(t, "tcp"), freePort(t, "tcp")
	central = runMeshmon(t, "central", "peer", "run", "--role", "central", "--name", "c1", "--trust", filepath.Join(keys, "trust.json"),
		"--listen", "127.0.0.1:"+strconv.Itoa(cport), "--leaf-listen", "127.0.0.1:"+strconv.Itoa(lport), "--data-dir", filepath.Join(dir, "c1"))
	central.waitOutput(`peer c1 ready`, peerReady)
	return central, keys, "nats://127.0.0.1:" + strconv.Itoa(cport), lport
}

// TestTenantsWalledOff runs a central peer in operator mode with two
// tenants, each with a site of its own, all real processes, and checks with
// the stock nats CLI what each tenant's credentials can and cannot do.
func TestTenantsWalledOff(t *testing.T) {
	natsBin := need(t, "nats")
	dir := t.TempDir()
	central, keys, curl, lport := startOperatorCentral(t, dir)
	cli := func(args ...string) string { return mustRun(t, append([]string{"--server", curl}, args...)...) }

	// Bad names are refused before anything is made.
	for _, bad := range []string{"a.b", "*", ">", "a b"} {
		if _, e, code := run(t, "--server", curl, "tenant", "create", bad, "--keys", keys); code != 1 || !strings.Contains(e, "tenant") {
			t.Fatalf("tenant create %q: exit %d, %q", bad, code, e)
		}
	}
	// So are meshmon's own names.
	for _, reserved := range []string{"system", "ops", "hub", "default"} {
		if _, e, code := run(t, "--server", curl, "tenant", "create", reserved, "--keys", keys); code != 1 || !strings.Contains(e, "reserved name") {
			t.Fatalf("tenant create %q: exit %d, %q", reserved, code, e)
		}
	}
	cli("tenant", "create", "acme", "--keys", keys)
	cli("tenant", "create", "beta", "--keys", keys)
	if _, e, code := run(t, "--server", curl, "tenant", "create", "acme", "--keys", keys); code != 1 || !strings.Contains(e, "already exists") {
		t.Fatalf("a second tenant acme: exit %d, %q", code, e)
	}

	// One site per tenant; the site peers dial central with the tenant's
	// leaf credential from the join token. acme's site dials through a WAN
	// that can be cut.
	wanA, err := wan.NewProxy("127.0.0.1:" + strconv.Itoa(lport))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(wanA.Close)
	sites := map[string]string{}
	for _, ts := range [][2]string{{"acme", "s1"}, {"beta", "s2"}} {
		token := filepath.Join(dir, ts[1]+".token")
		leaf := "nats-leaf://127.0.0.1:" + strconv.Itoa(lport)
		if ts[0] == "acme" {
			leaf = "nats-leaf://" + wanA.Addr()
		}
		cli("site", "add", ts[1], "--tenant", ts[0], "--keys", keys, "--central", leaf, "--token-file", token)
		port := freePort(t, "tcp")
		p := runMeshmon(t, ts[1], "peer", "run", "--role", "site", "--name", ts[1]+"-peer", "--join-file", token,
			"--listen", "127.0.0.1:"+strconv.Itoa(port), "--data-dir", filepath.Join(dir, ts[1]))
		p.waitOutput(`peer `+ts[1]+`-peer ready`, peerReady)
		sites[ts[0]] = "nats://127.0.0.1:" + strconv.Itoa(port)
	}
	creds := func(tenant string, args ...string) string {
		f := filepath.Join(dir, tenant+"-"+strings.Join(args, "-")+".creds")
		cli(append([]string{"tenant", "creds", tenant, "--keys", keys, "--out", f}, args...)...)
		return f
	}
	nocA, nocB := creds("acme", "--role", "noc"), creds("beta", "--role", "noc")
	// Sites take their tenants' credentials only: pollers publish with a
	// poller's.
	pollers := map[string]string{"acme": creds("acme", "--role", "poller", "--site", "s1"), "beta": creds("beta", "--role", "poller", "--site", "s2")}
	if out, ok := natsCLI(t, natsBin, "--server", sites["acme"], "pub", "ev.s1.d1.trap", "anonymous"); ok || !strings.Contains(out, "Authorization Violation") {
		t.Fatalf("an anonymous client published at a site: %s", out)
	}

	// Live: acme's NOC, and the ops account's consolidated view, subscribe
	// while both sites publish.
	sub := start(t, "nats sub", natsBin, withInboxPrefix([]string{"--server", curl, "--creds", nocA, "sub", "stored.ev.>"})...)
	sub.waitOutput(`Subscribing on stored\.ev\.>`, 10*time.Second)
	opsCreds := filepath.Join(dir, "ops.creds")
	cli("tenant", "creds", "--ops", "--keys", keys, "--out", opsCreds)
	opsSub := start(t, "nats sub ops", natsBin, withInboxPrefix([]string{"--server", curl, "--creds", opsCreds, "sub", "tenants.*.ev.>"})...)
	opsSub.waitOutput(`Subscribing on tenants\.\*\.ev\.>`, 10*time.Second)
	for tenant, site := range map[string]string{"acme": "s1", "beta": "s2"} {
		out, ok := natsCLI(t, natsBin, "--server", sites[tenant], "--creds", pollers[tenant], "pub", "ev."+site+".d{{Count}}.trap", tenant+"-event", "--count", "200",
			"-H", "Nats-Msg-Id:"+tenant+"-{{Count}}")
		if !ok {
			t.Fatalf("publish at %s: %s", site, out)
		}
	}
	// Stored: each tenant's central EVENTS holds its own site's 200.
	for tenant, f := range map[string]string{"acme": nocA, "beta": nocB} {
		// A fresh tenant site's first events can take tens of seconds to
		// reach an operator-mode central, which has no source watch
		// (docs/tenancy.md, Not done yet).
		eventually.True(t, 90*time.Second, tenant+"'s 200 events at central", func() bool {
			out, ok := natsCLI(t, natsBin, "--server", curl, "--creds", f, "stream", "info", "EVENTS", "--json")
			var info struct {
				State struct {
					Messages uint64 `json:"messages"`
				} `json:"state"`
			}
			return ok && json.Unmarshal([]byte(out), &info) == nil && info.State.Messages == 200
		})
	}
	eventually.True(t, 10*time.Second, "acme's NOC to see its live events", func() bool { return strings.Count(sub.out.String(), "acme-event") >= 200 })
	if strings.Contains(sub.out.String(), "beta-event") {
		t.Fatal("acme's NOC saw beta's events")
	}
	// (Counted again if the wait fails. Each event has a subject of its
	// own: the ops view must get each once. In two CI runs it got every
	// event of the second tenant twice, when the peer's source watch and
	// tenant workers put its key in force in the tenants' accounts at once:
	// peer.TestOpsViewOnceThroughKeyUpdates.)
	var opsA, opsB int
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the ops view saw %d of acme's and %d of beta's first 200 events", opsA, opsB)
		}
	})
	eventually.True(t, 30*time.Second, "the ops view to see both tenants' live events", func() bool {
		o := opsSub.out.String()
		opsA, opsB = distinctReceived(o, "tenants.acme.ev.s1."), distinctReceived(o, "tenants.beta.ev.s2.")
		return opsA == 200 && opsB == 200
	})
	noneTwice(t, "the ops view", opsSub.out.String())
	// The consolidated replay reads every tenant's stream.
	replay := cli("events", "tail", "--all-tenants", "--keys", keys, "--since", "1h", "--no-follow", "--json")
	per := map[string]int{}
	for _, l := range lines(replay) {
		var r struct {
			Tenant string `json:"tenant"`
			Event  string `json:"event"`
		}
		if err := json.Unmarshal([]byte(l), &r); err != nil || r.Event != r.Tenant+"-event" {
			t.Fatalf("replay line %q: %v", l, err)
		}
		per[r.Tenant]++
	}
	if per["acme"] != 200 || per["beta"] != 200 {
		t.Fatalf("the consolidated replay holds %v events per tenant, want 200 each", per)
	}

	// What a NOC may not do.
	if out, ok := natsCLI(t, natsBin, "--server", curl, "--creds", nocA, "sub", ">", "--count", "1", "--timeout", "1s"); ok || !strings.Contains(out, "Permissions Violation") {
		t.Fatalf("acme's NOC subscribed to '>': %s", out)
	}
	if out, ok := natsCLI(t, natsBin, "--server", curl, "--creds", nocA, "pub", "ev.s1.d1.trap", "forged"); ok || !strings.Contains(out, "Permissions Violation") {
		t.Fatalf("acme's NOC published: %s", out)
	}
	for _, args := range [][]string{{"stream", "purge", "EVENTS", "-f"}, {"stream", "rm", "EVENTS", "-f"}} {
		natsCLI(t, natsBin, append([]string{"--server", curl, "--creds", nocA, "--timeout", "2s"}, args...)...)
	}
	out, ok := natsCLI(t, natsBin, "--server", curl, "--creds", nocA, "stream", "ls", "--names")
	if !ok || !strings.Contains(out, "EVENTS") {
		t.Fatalf("acme's NOC lists: %s", out)
	}
	out, _ = natsCLI(t, natsBin, "--server", curl, "--creds", nocA, "stream", "info", "EVENTS", "--json")
	if !strings.Contains(out, `"messages": 200`) {
		t.Fatalf("acme's EVENTS after its NOC tried to purge and delete it: %s", out)
	}
	// A NOC replays through a consumer of its own.
	out, ok = natsCLI(t, natsBin, "--server", curl, "--creds", nocA, "stream", "get", "EVENTS", "1")
	if !ok || !strings.Contains(out, "acme-event") {
		t.Fatalf("acme's NOC reads event 1: %s", out)
	}

	// acme's site is cut off from central for a while and publishes 300
	// more; beta's goes on. Once the link is back, the ops view, live and
	// replayed, holds every event of both tenants.
	wanA.Cut(true)
	publish := func(tenant, site string) {
		t.Helper()
		out, ok := natsCLI(t, natsBin, "--server", sites[tenant], "--creds", pollers[tenant], "pub", "ev."+site+".late{{Count}}.trap", tenant+"-event", "--count", "300",
			"-H", "Nats-Msg-Id:"+tenant+"-late-{{Count}}")
		if !ok {
			t.Fatalf("publish at %s: %s", site, out)
		}
	}
	publish("acme", "s1")
	publish("beta", "s2")
	cut := tenantCutFor()
	time.Sleep(cut) // the outage itself: the site keeps what it stores
	wanA.Cut(false)
	back := time.Now()
	eventually.True(t, 2*time.Minute, "the ops view to hold every event of both tenants", func() bool {
		o := opsSub.out.String()
		return distinctReceived(o, "tenants.acme.ev.s1.") == 500 && distinctReceived(o, "tenants.beta.ev.s2.") == 500
	})
	noneTwice(t, "the ops view", opsSub.out.String())
	t.Logf("WAN of acme's site cut for %s; the ops view had every event %s after the link returned", cut, time.Since(back).Round(time.Millisecond))
	replay = cli("events", "tail", "--all-tenants", "--keys", keys, "--since", "1h", "--no-follow", "--json")
	per = map[string]int{}
	for _, l := range lines(replay) {
		var r struct {
			Tenant string `json:"tenant"`
		}
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("replay line %q: %v", l, err)
		}
		per[r.Tenant]++
	}
	if per["acme"] != 500 || per["beta"] != 500 {
		t.Fatalf("after the outage the consolidated replay holds %v events per tenant, want 500 each", per)
	}

	// A tenant that holds data is not removed without --force.
	if _, e, code := run(t, "--server", curl, "tenant", "rm", "beta", "--keys", keys); code != 1 || !strings.Contains(e, "holds 500 events") {
		t.Fatalf("tenant rm beta: exit %d, %q", code, e)
	}

	// Revoked: the same file is refused.
	cli("tenant", "creds", "acme", "--keys", keys, "--revoke", "noc")
	if out, ok := natsCLI(t, natsBin, "--server", curl, "--creds", nocA, "stream", "ls"); ok || !strings.Contains(out, "Authorization Violation") {
		t.Fatalf("revoked NOC credentials: %s", out)
	}

	// Removed with --force: its users are refused, the other tenant goes on.
	cli("tenant", "rm", "beta", "--keys", keys, "--force")
	if out, ok := natsCLI(t, natsBin, "--server", curl, "--creds", nocB, "stream", "ls"); ok {
		t.Fatalf("a removed tenant's NOC still connects: %s", out)
	}
	list := cli("tenant", "list", "--keys", keys)
	if !strings.Contains(list, "acme") || strings.Contains(list, "beta") {
		t.Fatalf("tenant list after rm beta:\n%s", list)
	}
	central.stopClean()
}

// distinctReceived counts the subjects under prefix that the stock nats
// CLI's sub printed at least once ("Received on <subject>").
func distinctReceived(out, prefix string) int {
	seen := map[string]bool{}
	for _, l := range strings.Split(out, "\n") {
		if i := strings.Index(l, `Received on "`+prefix); i >= 0 {
			seen[strings.SplitN(l[i+len(`Received on "`):], `"`, 2)[0]] = true
		}
	}
	return len(seen)
}

// noneTwice fails the test if the stock nats CLI's sub got a message more
// than once, by subject.
func noneTwice(t *testing.T, what, out string) {
	t.Helper()
	n := map[string]int{}
	for _, l := range strings.Split(out, "\n") {
		if i := strings.Index(l, `Received on "`); i >= 0 {
			n[strings.SplitN(l[i+len(`Received on "`):], `"`, 2)[0]]++
		}
	}
	twice := 0
	for _, c := range n {
		if c > 1 {
			twice++
		}
	}
	if twice > 0 {
		t.Errorf("%s got %d of its %d messages more than once", what, twice, len(n))
	}
}

// tenantCutFor is how long TestTenantsWalledOff cuts a site's WAN: 45 s
// (longer than the leaf link's pings take to find the cut, and than the
// sources' first retries), or MESHMON_E2E_WAN_CUT. TestMeshFaults cuts
// for two minutes; the tenancy test is about walls, not outages.
func tenantCutFor() time.Duration {
	if os.Getenv("MESHMON_E2E_WAN_CUT") != "" {
		return meshCutFor()
	}
	return 45 * time.Second
}

// TestTenantPoP runs one site that serves two tenants (an ISP's point of
// presence), all real processes: each tenant's poller credential publishes
// only its site's subjects of its tenant, a real poller works with one, and
// a tenant that fills its disk gets clear publish errors while the other
// goes on ingesting.
func TestTenantPoP(t *testing.T) {
	natsBin := need(t, "nats")
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	mustRun(t, "init", "--keys", keys)
	cport, lport, pport := freePort(t, "tcp"), freePort(t, "tcp"), freePort(t, "tcp")
	curl, purl := "nats://127.0.0.1:"+strconv.Itoa(cport), "nats://127.0.0.1:"+strconv.Itoa(pport)
	central := runMeshmon(t, "central", "peer", "run", "--role", "central", "--name", "c1", "--trust", filepath.Join(keys, "trust.json"),
		"--listen", "127.0.0.1:"+strconv.Itoa(cport), "--leaf-listen", "127.0.0.1:"+strconv.Itoa(lport), "--data-dir", filepath.Join(dir, "c1"))
	central.waitOutput(`peer c1 ready`, peerReady)
	cli := func(args ...string) string { return mustRun(t, append([]string{"--server", curl}, args...)...) }
	cli("tenant", "create", "acme", "--keys", keys)
	cli("tenant", "create", "beta", "--keys", keys, "--disk", "4MiB")
	join := []string{"peer", "run", "--role", "site", "--name", "pop-peer", "--listen", "127.0.0.1:" + strconv.Itoa(pport), "--data-dir", filepath.Join(dir, "pop")}
	for _, tenant := range []string{"acme", "beta"} {
		token := filepath.Join(dir, tenant+".token")
		cli("site", "add", "pop", "--tenant", tenant, "--keys", keys, "--central", "nats-leaf://127.0.0.1:"+strconv.Itoa(lport), "--token-file", token)
		join = append(join, "--join-file", token)
	}
	pop := runMeshmon(t, "pop", join...)
	pop.waitOutput(`peer pop-peer ready`, peerReady)

	creds := func(tenant string, args ...string) string {
		f := filepath.Join(dir, tenant+"-"+strings.Join(args, "-")+".creds")
		cli(append([]string{"tenant", "creds", tenant, "--keys", keys, "--out", f}, args...)...)
		return f
	}
	pollA, pollB := creds("acme", "--role", "poller", "--site", "pop", "--user", "p1"), creds("beta", "--role", "poller", "--site", "pop")
	// Poller credentials are issued for the tenant's own sites only: pop
	// is beta's too, but "elsewhere" is no site of acme's until added.
	if _, stderr, code := run(t, "--server", curl, "tenant", "creds", "acme", "--keys", keys, "--role", "poller", "--site", "elsewhere"); code != 1 || !strings.Contains(stderr, "not a site of tenant acme") {
		t.Fatalf("a poller credential for a site acme never added: exit %d, %q", code, stderr)
	}
	cli("site", "add", "elsewhere", "--tenant", "acme", "--keys", keys, "--central", "nats-leaf://127.0.0.1:"+strconv.Itoa(lport), "--token-file", filepath.Join(dir, "elsewhere.token"))
	elsewhere := creds("acme", "--role", "poller", "--site", "elsewhere", "--user", "p-elsewhere")
	nocA, nocB := creds("acme", "--role", "noc"), creds("beta", "--role", "noc")
	adminA := creds("acme", "--role", "admin")

	// A poller credential of another site is refused at pop (pop drops
	// the other sites' poller keys, TestPollerScope), and at central,
	// which drops them all.
	if out, ok := natsCLI(t, natsBin, "--server", purl, "--creds", elsewhere, "pub", "ev.pop.d1.trap", "x"); ok || !strings.Contains(out, "Authorization Violation") {
		t.Fatalf("a poller of another site at pop: %s", out)
	}
	if out, ok := natsCLI(t, natsBin, "--server", curl, "--creds", elsewhere, "pub", "ev.pop.d1.trap", "x"); ok || !strings.Contains(out, "Authorization Violation") {
		t.Fatalf("a poller credential at central: %s", out)
	}
	count := func(creds, stream string) uint64 {
		out, ok := natsCLI(t, natsBin, "--server", curl, "--creds", creds, "stream", "info", stream, "--json")
		var info struct {
			State struct {
				Messages uint64 `json:"messages"`
			} `json:"state"`
		}
		if !ok || json.Unmarshal([]byte(out), &info) != nil {
			return 0
		}
		return info.State.Messages
	}

	// A real poller with acme's poller credential polls a simulated device.
	sm := startSim(t, "pp", "127.79.0.1", 1)
	a := sm.Agents()[0]
	mustRun(t, "--server", purl, "--creds", adminA, "device", "add", a.Name(), "--address", a.Addr().Addr().String(),
		"--checks", "snmp", "--snmp-port", strconv.Itoa(int(a.Addr().Port())), "--interval", "1s")
	poller := runMeshmon(t, "poller", "--server", purl, "--creds", pollA, "poller", "run", "--site", "pop", "--tenant", "acme",
		"--name", "p1", "--data-dir", filepath.Join(dir, "p1"))
	poller.waitOutput(`poller started`, 30*time.Second)
	// A poller that says it is another tenant's than its credential is
	// refused at start, with the credential's tenant named.
	if _, stderr, code := run(t, "--server", purl, "--creds", pollA, "poller", "run", "--tenant", "beta", "--name", "p2",
		"--data-dir", filepath.Join(dir, "p2")); code != 1 || !strings.Contains(stderr, "is tenant acme's") {
		t.Fatalf("a poller of acme's credential run as beta: exit %d, %q; want 1 and the credential's tenant", code, stderr)
	}
	// The site is fresh: see the first wait of TestTenantsWalledOff.
	eventually.True(t, 90*time.Second, "acme's samples at central", func() bool { return count(nocA, "METRICS") > 0 })
	if n := count(nocB, "METRICS"); n != 0 {
		t.Fatalf("beta's central METRICS holds %d samples; the poller is acme's", n)
	}

	// The site's status, as acme sees it, bounds its streams by acme's disk.
	if st := mustRun(t, "--server", purl, "--creds", pollA, "status"); !strings.Contains(st, "the tenant's 21GiB") {
		t.Fatalf("status at the site, with acme's poller credential:\n%s", st)
	}

	// beta fills its 4 MiB: clear errors; acme goes on.
	body := strings.Repeat("x", 1000)
	out, ok := natsCLI(t, natsBin, "--server", purl, "--creds", pollB, "pub", "ev.pop.big.trap", body, "--count", "6000", "--jetstream",
		"-H", "Nats-Msg-Id:big-{{Count}}")
	if ok || !strings.Contains(out, "resource limits exceeded for account") {
		t.Fatalf("beta published 6 MB within a 4 MiB limit: %s", tail(out, 5))
	}
	before := count(nocA, "EVENTS")
	out, ok = natsCLI(t, natsBin, "--server", purl, "--creds", pollA, "pub", "ev.pop.d1.trap", body, "--count", "500", "--jetstream",
		"-H", "Nats-Msg-Id:acme-{{Count}}")
	if !ok {
		t.Fatalf("acme could not publish while beta was full: %s", tail(out, 5))
	}
	eventually.True(t, 30*time.Second, "acme's 500 events at central", func() bool { return count(nocA, "EVENTS") >= before+500 })

	// Changes reach the site at run time: beta's disk is raised and it
	// publishes again; a revoked poller credential is refused at the site.
	cli("tenant", "limits", "beta", "--keys", keys, "--disk", "16MiB")
	eventually.True(t, 30*time.Second, "beta to publish again after its disk was raised", func() bool {
		_, ok := natsCLI(t, natsBin, "--server", purl, "--creds", pollB, "pub", "ev.pop.more.trap", body, "--count", "100", "--jetstream",
			"-H", "Nats-Msg-Id:more-{{Count}}")
		return ok
	})
	doomed := creds("acme", "--role", "poller", "--site", "pop", "--user", "p-doomed")
	if out, ok := natsCLI(t, natsBin, "--server", purl, "--creds", doomed, "pub", "ev.pop.d1.trap", "x"); !ok {
		t.Fatalf("a new poller credential at the site: %s", out)
	}
	cli("tenant", "creds", "acme", "--keys", keys, "--revoke", "p-doomed")
	eventually.True(t, 30*time.Second, "the site to refuse a revoked credential", func() bool {
		out, ok := natsCLI(t, natsBin, "--server", purl, "--creds", doomed, "pub", "ev.pop.d1.trap", "x")
		return !ok && strings.Contains(out, "Authorization Violation")
	})
	if out, ok := natsCLI(t, natsBin, "--server", purl, "--creds", pollA, "pub", "ev.pop.d1.trap", "still-here"); !ok {
		t.Fatalf("acme's other poller credential after the revocation: %s", out)
	}

	// A site restarted while central is out of reach keeps the accounts it
	// followed, not its join tokens': the revoked credential stays refused.
	poller.stopClean()
	central.stopClean()
	pop.stopClean()
	pop = runMeshmon(t, "pop-restarted", join...)
	pop.waitOutput(`peer pop-peer ready`, peerReady)
	if out, ok := natsCLI(t, natsBin, "--server", purl, "--creds", doomed, "pub", "ev.pop.d1.trap", "x"); ok || !strings.Contains(out, "Authorization Violation") {
		t.Fatalf("a revoked credential at a site restarted while central was down: %s", out)
	}
	if out, ok := natsCLI(t, natsBin, "--server", purl, "--creds", pollA, "pub", "ev.pop.d1.trap", "after-restart"); !ok {
		t.Fatalf("acme's poller credential at the restarted site: %s", out)
	}
	pop.stopClean()
}

// startSim runs n simulated SNMP agents in this process until the test ends.
func startSim(t *testing.T, prefix, base string, n int) *sim.Sim {
	t.Helper()
	scfg := sim.DefaultConfig()
	scfg.Agents, scfg.NamePrefix, scfg.BaseAddr = n, prefix, mustAddr(base)
	sm, err := sim.New(scfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := sm.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sm.Close() })
	return sm
}

// TestBenchTenants runs 'meshmon bench tenants' small: it creates the
// tenants, and a tenant over its disk limit stores none of the publishes
// it keeps making while another ingests (the bench fails if it does).
// The bench watches its process at rest for 10 s twice, so it takes 28 s
// on a quiet machine: it gets a bound of its own, not mustRun's 30 s.
func TestBenchTenants(t *testing.T) {
	out := mustRunWithin(t, 3*time.Minute, "bench", "tenants", "--tenants", "3", "--msgs", "500", "--settle", "0s", "--json")
	var res struct {
		Tenants               int       `json:"tenants"`
		IngestAfter           float64   `json:"ingest_msgs_per_s_after"`
		DiskSyncsAfter        []float64 `json:"disk_syncs_per_s_after_runs"`
		IngestRatioDisk       float64   `json:"ingest_ratio_after_before_per_disk_sync"`
		IngestNeighbourPaced  float64   `json:"ingest_msgs_per_s_neighbour_paced"`
		IngestNeighbourFlood  float64   `json:"ingest_msgs_per_s_neighbour_flood"`
		NeighbourFloodRefused int       `json:"neighbour_flood_publishes_refused"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("bench tenants --json printed %q: %v", out, err)
	}
	if res.Tenants != 3 || res.IngestAfter <= 0 || len(res.DiskSyncsAfter) != 3 || res.IngestRatioDisk <= 0 || res.IngestNeighbourPaced <= 0 || res.IngestNeighbourFlood <= 0 || res.NeighbourFloodRefused == 0 {
		t.Fatalf("bench tenants: %+v", res)
	}
}
