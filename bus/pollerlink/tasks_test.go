package pollerlink_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/bus/pollerlink"
	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/internal/freeport"
	"github.com/meshmon/meshmon/internal/wan"
	"github.com/meshmon/meshmon/peer"
	"github.com/meshmon/meshmon/poller"
	"github.com/meshmon/meshmon/sim"
	"github.com/meshmon/meshmon/tenancy"
)

// taskMesh is a central peer in operator mode with tenant acme and its
// site hq, linked through a WAN proxy the test can cut, a poller of hq
// and simulated agents on one UDP port, linked to each other in a
// topology (sim.Config.Topology) or not.
type taskMesh struct {
	t       testing.TB
	st      *tenancy.Store
	central *peer.Peer
	site    *peer.Peer
	proxy   *wan.Proxy
	admin   *nats.Conn // acme's admin at central
	sim     *sim.Sim
	prefix  netip.Prefix // the agents' /24
	dir     string
}

func connectCreds(t testing.TB, url string, creds []byte, opts ...nats.Option) (*nats.Conn, error) {
	t.Helper()
	auth, err := tenancy.CredsOption(creds)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url, append([]nats.Option{auth, nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond)}, opts...)...)
	if err == nil {
		t.Cleanup(nc.Close)
	}
	return nc, err
}

func startTaskMesh(t testing.TB, agents int, topology string) *taskMesh {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m := &taskMesh{t: t, dir: t.TempDir()}
	st, err := tenancy.Init(filepath.Join(m.dir, "keys"), "test")
	if err != nil {
		t.Fatal(err)
	}
	m.st = st
	trust, err := st.Trust()
	if err != nil {
		t.Fatal(err)
	}
	trustFile := filepath.Join(m.dir, "trust.json")
	b, _ := json.Marshal(trust)
	if err := os.WriteFile(trustFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	leaf, err := freeport.TCP()
	if err != nil {
		t.Fatal(err)
	}
	ccfg := peer.DefaultConfig()
	ccfg.Role, ccfg.Site, ccfg.Name, ccfg.Listen, ccfg.DataDir = peer.RoleCentral, "", "c1", "127.0.0.1:0", filepath.Join(m.dir, "c1")
	ccfg.Insecure, ccfg.Trust, ccfg.LeafListen = true, trustFile, leaf
	m.central = startPeer(t, ctx, ccfg)

	sysCreds, err := st.SystemCreds(0)
	if err != nil {
		t.Fatal(err)
	}
	sys, err := connectCreds(t, m.central.ClientURL(), sysCreds)
	if err != nil {
		t.Fatal(err)
	}
	m.admin = m.tenant(ctx, sys, "acme", "hq")
	m.tenant(ctx, sys, "beta", "")
	ops, _, err := st.OpsAccount()
	if err != nil {
		t.Fatal(err)
	}
	if err := tenancy.Push(ctx, sys, ops); err != nil {
		t.Fatal(err)
	}

	bundle, err := st.IssueSite("acme", "hq")
	if err != nil {
		t.Fatal(err)
	}
	if m.proxy, err = wan.NewProxy(leaf); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.proxy.Close)
	scfg := peer.DefaultConfig()
	scfg.Site, scfg.Name, scfg.Listen, scfg.DataDir, scfg.Insecure = "hq", "hq-1", "127.0.0.1:0", filepath.Join(m.dir, "hq"), true
	scfg.SiteTrust = &bundle.Trust
	scfg.Central = []string{"nats-leaf://" + m.proxy.Addr()}
	scfg.Tenants = []peer.SiteTenant{{Name: "acme", Account: bundle.Account, AccountJWT: bundle.AccountJWT,
		LeafCreds: string(bundle.LeafCreds), UpkeepCreds: string(bundle.UpkeepCreds)}}
	m.site = startPeer(t, ctx, scfg)

	m.startSim(ctx, agents, topology)
	m.startPoller(ctx, "p1")
	return m
}

// tenant creates a tenant with its central streams and, if site is not
// empty, its site, and returns its admin's connection.
func (m *taskMesh) tenant(ctx context.Context, sys *nats.Conn, name, site string) *nats.Conn {
	t := m.t
	tn, err := m.st.CreateTenant(name, tenancy.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if site != "" {
		if tn, _, err = m.st.EnsurePollerKey(name, site); err != nil {
			t.Fatal(err)
		}
	}
	if err := tenancy.Push(ctx, sys, tn.JWT); err != nil {
		t.Fatal(err)
	}
	creds, err := m.st.AdminCreds(name, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := connectCreds(t, m.central.ClientURL(), creds)
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.WaitJetStream(ctx, js); err != nil {
		t.Fatal(err)
	}
	lim := bus.DefaultStreamLimits()
	lim.EventsMaxBytes, lim.MetricsMaxBytes = 64<<20, 16<<20
	// Central applies a pushed account twice (the resolver's JWT, then
	// its claims watch's edit without the sites' poller keys,
	// peer/centralclaims.go); while it does the account's JetStream may
	// answer nothing for a moment, and provision.MakeStreams asks again
	// so. So does this.
	eventually.NoError(t, 30*time.Second, "the tenant's central streams", func() error { return bus.EnsureCentral(ctx, js, lim) })
	if site != "" {
		eventually.NoError(t, 30*time.Second, "site "+site+" at central", func() error {
			// A try whose answer was lost stored the site:
			// ErrSiteExists then, its sources set.
			if err := bus.AddSite(ctx, js, site, time.Now()); !errors.Is(err, bus.ErrSiteExists) {
				return err
			}
			return nil
		})
	}
	return nc
}

func startPeer(t testing.TB, ctx context.Context, cfg peer.Config) *peer.Peer {
	t.Helper()
	p, err := peer.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// startSim starts agents on one free UDP port in a /24 of their own (a
// /22 for more than 254), with 2 interfaces each, 3 in a topology.
func (m *taskMesh) startSim(ctx context.Context, agents int, topology string) {
	t := m.t
	port, err := freeport.Port("udp")
	if err != nil {
		t.Fatal(err)
	}
	// A /22 of its own: up to 4 x 254 agents (the simulator skips .0
	// and .255).
	base := netip.AddrFrom4([4]byte{127, byte(100 + rand.IntN(100)), byte(4 * rand.IntN(63)), 1})
	cfg := sim.DefaultConfig()
	cfg.Agents, cfg.BaseAddr, cfg.Port, cfg.Interfaces, cfg.Topology = agents, base, port, 2, topology
	if topology != sim.TopologyNone {
		cfg.Interfaces = 3
	}
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	m.sim = s
	m.prefix = netip.PrefixFrom(base, 24).Masked()
	if agents > 254 {
		m.prefix = netip.PrefixFrom(base, 22).Masked()
	}
}

// startPoller runs a poller of hq with its own credential.
func (m *taskMesh) startPoller(ctx context.Context, name string) func() error {
	t := m.t
	_, creds, err := m.st.IssueUser("acme", name, tenancy.RolePoller, "hq")
	if err != nil {
		t.Fatal(err)
	}
	credsFile := filepath.Join(m.dir, name+".creds")
	if err := os.WriteFile(credsFile, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := poller.DefaultConfig()
	cfg.Tenant, cfg.Site, cfg.Name = "acme", "hq", name
	scfg := poller.ServiceConfig{Config: cfg, DataDir: filepath.Join(m.dir, name), PeerWait: 10 * time.Second}
	var log *slog.Logger
	if os.Getenv("MESHMON_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	// The poller runs until the test ends, not until ctx does.
	_, stop, err := pollerlink.StartReady(context.WithoutCancel(ctx), scfg, bus.ConnConfig{URL: m.site.ClientURL(), CredsFile: credsFile}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// centralInventory is hq's inventory, from central, through the site's
// JetStream domain.
func (m *taskMesh) centralInventory(ctx context.Context) *bus.Inventory {
	t := m.t
	creds, err := m.st.AdminCreds("acme", 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := connectCreds(t, m.central.ClientURL(), creds, nats.CustomInboxPrefix(bus.SiteInboxPrefix("hq")))
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.NewWithDomain(nc, "hq")
	if err != nil {
		t.Fatal(err)
	}
	var inv *bus.Inventory
	eventually.NoError(t, 60*time.Second, "hq's inventory from central", func() (err error) {
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		inv, err = bus.OpenInventory(actx, js)
		if err != nil {
			t.Log(err)
		}
		return err
	})
	return inv
}

func task(verb string) meshmon.TaskRequest {
	return meshmon.TaskRequest{ID: nuid.Next(), Verb: verb, Site: "hq", By: tenancy.AdminCredsUser, Timeout: meshmon.Duration(30 * time.Second)}
}

// collect runs req from central and returns its replies.
func collect(ctx context.Context, nc *nats.Conn, req meshmon.TaskRequest) ([]meshmon.TaskReply, error) {
	return collectReach(ctx, nc, req, 5*time.Second)
}

func collectReach(ctx context.Context, nc *nats.Conn, req meshmon.TaskRequest, reach time.Duration) ([]meshmon.TaskReply, error) {
	var mu sync.Mutex
	var out []meshmon.TaskReply
	err := bus.RunTask(ctx, nc, req, bus.TaskOptions{Reach: reach, Idle: 5 * time.Second, OnReply: func(r meshmon.TaskReply) {
		mu.Lock()
		out = append(out, r)
		mu.Unlock()
	}})
	return out, err
}

// TestTasksFromCentral: from central, over the leaf link hq dialled, an
// admin adds devices to hq's inventory and runs each task against
// simulated agents linked in a ring; the owner answers device tasks;
// discovery of the agents' /24 finds every agent by SNMP with the site's
// community, and their neighbours make exactly the simulator's links;
// every run is an audit event in central's EVENTS; with the link cut each
// task fails within its timeout as the site being offline.
func TestTasksFromCentral(t *testing.T) {
	m := startTaskMesh(t, 12, sim.TopologyRing)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	inv := m.centralInventory(ctx)
	agents := m.sim.Agents()
	for _, a := range agents[:2] {
		if _, err := inv.Create(ctx, a.Device(time.Minute, time.Second, "public")); err != nil {
			t.Fatalf("add %s from central: %v", a.Name(), err)
		}
	}
	dev := agents[0].Name()
	devs, err := inv.List(ctx)
	if err != nil || len(devs) != 2 {
		t.Fatalf("hq's inventory from central: %d devices, %v", len(devs), err)
	}

	// poll-now, once the poller polls the device.
	var replies []meshmon.TaskReply
	eventually.NoError(t, 30*time.Second, "poll-now "+dev, func() (err error) {
		// (A short reach: until the poller has the device it owns by the
		// assignment, nothing answers.)
		replies, err = collectReach(ctx, m.admin, func() meshmon.TaskRequest { r := task(meshmon.TaskPollNow); r.Device = dev; return r }(), time.Second)
		return err
	})
	if got := samples(replies); !strings.Contains(got, "system") || !strings.Contains(got, "if") || replies[0].Poller != "p1" {
		t.Fatalf("poll-now replies: checks %q from %q", got, replies[0].Poller)
	}

	// walk of the interfaces' table, streamed in several replies.
	req := task(meshmon.TaskWalk)
	req.Device, req.OIDs = dev, []string{"1.3.6.1.2.1.2.2"}
	if replies, err = collect(ctx, m.admin, req); err != nil {
		t.Fatal(err)
	}
	if n := varbinds(replies); n < 2*8 || !replies[len(replies)-1].Done {
		t.Fatalf("walk of ifTable: %d objects, want 8 columns of 2 rows or more, then the end", n)
	}

	// snmp-get and ping at an address, from the site.
	req = task(meshmon.TaskSNMPGet)
	req.Address, req.Port, req.OIDs = agents[5].Addr().Addr().String(), int(agents[5].Addr().Port()), []string{"1.3.6.1.2.1.1.5.0"}
	if replies, err = collect(ctx, m.admin, req); err != nil {
		t.Fatal(err)
	}
	if vb := allVarbinds(replies); len(vb) != 1 || vb[0].Value != agents[5].Name() {
		t.Fatalf("snmp-get sysName of %s: %+v", agents[5].Name(), vb)
	}
	req = task(meshmon.TaskPing)
	req.Address = agents[5].Addr().Addr().String()
	switch replies, err = collect(ctx, m.admin, req); {
	case err != nil && strings.Contains(err.Error(), "may not send ICMP"):
		t.Logf("ping NOT CHECKED: this host denies the poller ICMP (%v)", err)
	case err != nil:
		t.Fatal(err)
	}

	// discovery of the /24: every agent, by SNMP, with the inventory's
	// community.
	req = task(meshmon.TaskDiscover)
	req.CIDR, req.Port, req.Rate = m.prefix.String(), int(agents[0].Addr().Port()), meshmon.DiscoverMaxRate
	if replies, err = collect(ctx, m.admin, req); err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	progress := 0
	for _, r := range replies {
		for _, c := range r.Candidates {
			if c.SNMP {
				found[c.SysName] = true
			}
		}
		if r.Progress != nil {
			progress++
		}
	}
	for _, a := range agents {
		if !found[a.Name()] {
			t.Errorf("discovery of %s did not find %s (found %d)", m.prefix, a.Name(), len(found))
		}
	}
	if progress == 0 {
		t.Error("discovery sent no progress")
	}
	checkCandidateLinks(t, replies, m.sim.Links())
	// --add: the candidates into hq's inventory, from central, with the
	// credential each answered with; the two devices there are left.
	var cands []meshmon.Candidate
	for _, r := range replies {
		cands = append(cands, r.Candidates...)
	}
	added := 0
	for _, a := range bus.AddCandidates(ctx, inv, cands, nil, req.Port, time.Hour) {
		switch {
		case a.Result == "added":
			added++
		case a.Result != "exists" || a.Name != agents[0].Name() && a.Name != agents[1].Name():
			t.Errorf("discover --add: %+v", a)
		}
	}
	if d, err := inv.Get(ctx, agents[7].Name()); added != len(agents)-2 || err != nil || d.SNMP.Community != "public" || d.SNMP.Port != req.Port {
		t.Errorf("discover --add added %d devices, want %d; %s: %+v, %v", added, len(agents)-2, agents[7].Name(), d, err)
	}

	// No such device; a cut link: the site is offline, within the reach.
	req = task(meshmon.TaskPollNow)
	req.Device = "nope"
	if _, err := collect(ctx, m.admin, req); !errors.Is(err, bus.ErrTaskDevice) {
		t.Fatalf("poll-now of a device hq lacks: %v, want %v", err, bus.ErrTaskDevice)
	}
	m.waitAudit(ctx, 5) // poll-now, walk, snmp-get, ping, discover; not the refused one

	m.refusedAudit(ctx)
	m.spoof(ctx)
	m.opsTasks(ctx)
	m.cancelled(ctx)
	m.bigWalk(ctx, inv)
	m.snmpd(ctx, inv)

	m.cutDiscovery(ctx) // leaves the link cut
	for _, verb := range []string{meshmon.TaskPollNow, meshmon.TaskWalk, meshmon.TaskPing, meshmon.TaskSNMPGet, meshmon.TaskDiscover} {
		req := task(verb)
		req.Device, req.Address, req.OIDs, req.CIDR = dev, "127.0.0.1", []string{"1.3.6.1.2.1.1"}, m.prefix.String()
		start := time.Now()
		_, err := collectReach(ctx, m.admin, req, 2*time.Second)
		if !errors.Is(err, bus.ErrSiteOffline) || !strings.Contains(err.Error(), "site hq is offline (no reply in 2s)") {
			t.Errorf("%s with the link cut: %v, want site hq is offline (no reply in 2s)", verb, err)
		}
		if took := time.Since(start); took > 4*time.Second {
			t.Errorf("%s with the link cut took %s; its reach is 2s", verb, took)
		}
	}
	m.proxy.Cut(false)
}

// checkCandidateLinks: the links that a discovery's candidates' neighbours
// make (meshmon.Links, as `meshmon topology` maps them) are exactly the
// simulator's, in any orientation; each link between two agents is seen
// from both ends, and the uplink's far end is unknown.
func checkCandidateLinks(t *testing.T, replies []meshmon.TaskReply, want []sim.Link) {
	t.Helper()
	var devs []meshmon.DeviceNeighbors
	for _, r := range replies {
		for _, c := range r.Candidates {
			if c.SNMP {
				devs = append(devs, meshmon.DeviceNeighbors{Device: c.SysName, Address: c.Address,
					Table: meshmon.NeighborTable{Local: meshmon.LocalIdentity{SysName: c.SysName}, Neighbors: c.Neighbors}})
			}
		}
	}
	key := func(a, ap, b, bp string) string {
		if a > b {
			a, ap, b, bp = b, bp, a, ap
		}
		return a + ":" + ap + "-" + b + ":" + bp
	}
	var got, w []string
	links := meshmon.Links(devs, nil)
	for _, l := range links {
		got = append(got, key(l.A.Device, l.A.Port, l.B.Device, l.B.Port))
		if uplink := l.B.Device == sim.UplinkSysName; uplink == l.B.Known || !uplink && !l.Both {
			t.Errorf("link %+v: want both ends seen, or an unknown uplink", l)
		}
	}
	for _, l := range want {
		w = append(w, key(l.A.Device, l.A.Port, l.B.Device, l.B.Port))
	}
	slices.Sort(got)
	slices.Sort(w)
	if !slices.Equal(got, w) {
		t.Errorf("links of the discovered neighbours:\n got %v\nwant %v", got, w)
	}
}

// waitAudit waits until central's EVENTS holds n task audit events of hq.
func (m *taskMesh) waitAudit(ctx context.Context, n int) {
	t := m.t
	js, err := jetstream.New(m.admin)
	if err != nil {
		t.Fatal(err)
	}
	eventually.NoError(t, 60*time.Second, "the task audit events at central", func() error {
		s, err := js.Stream(ctx, bus.EventsStream)
		if err != nil {
			return err
		}
		info, err := s.Info(ctx, jetstream.WithSubjectFilter("ev.hq.*.task"))
		if err != nil {
			return err
		}
		got := uint64(0)
		for _, c := range info.State.Subjects {
			got += c
		}
		if got < uint64(n) {
			return fmt.Errorf("%d task events at central, want %d", got, n)
		}
		return nil
	})
	s, err := js.Stream(ctx, bus.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := s.GetLastMsgForSubject(ctx, "ev.hq._site.task")
	if err != nil {
		t.Fatal(err)
	}
	var ev meshmon.Event
	if err := json.Unmarshal(msg.Data, &ev); err != nil {
		t.Fatal(err)
	}
	if a := ev.Data.Task; a == nil || a.Verb != meshmon.TaskDiscover || a.By != tenancy.AdminCredsUser || a.Result != "ok" || a.Found < 12 || ev.Data.Poller != "p1" {
		t.Fatalf("the discovery's audit event: %+v", ev.Data)
	}
}

func samples(rs []meshmon.TaskReply) string {
	var checks []string
	for _, r := range rs {
		for _, s := range r.Samples {
			checks = append(checks, s.Check)
		}
	}
	return strings.Join(checks, ",")
}

func allVarbinds(rs []meshmon.TaskReply) []meshmon.Varbind {
	var out []meshmon.Varbind
	for _, r := range rs {
		out = append(out, r.Varbinds...)
	}
	return out
}

func varbinds(rs []meshmon.TaskReply) int {
	n := 0
	for _, r := range rs {
		n += len(r.Varbinds)
	}
	return n
}

// lastTaskEvent is the newest audit event on subject at central.
func (m *taskMesh) lastTaskEvent(ctx context.Context, subject string) (*meshmon.TaskAudit, error) {
	js, err := jetstream.New(m.admin)
	if err != nil {
		return nil, err
	}
	s, err := js.Stream(ctx, bus.EventsStream)
	if err != nil {
		return nil, err
	}
	msg, err := s.GetLastMsgForSubject(ctx, subject)
	if err != nil {
		return nil, err
	}
	var ev meshmon.Event
	if err := json.Unmarshal(msg.Data, &ev); err != nil {
		return nil, err
	}
	if ev.Data.Task == nil {
		return nil, fmt.Errorf("event %s has no task record", subject)
	}
	return ev.Data.Task, nil
}

// refusedAudit: the poll-now of a device hq lacks, refused, is recorded
// as refused, with the reason, by its verified requester.
func (m *taskMesh) refusedAudit(ctx context.Context) {
	t := m.t
	eventually.NoError(t, 30*time.Second, "the refused poll-now's audit event", func() error {
		a, err := m.lastTaskEvent(ctx, "ev.hq.nope.task")
		if err != nil {
			return err
		}
		if a.Verb != meshmon.TaskPollNow || a.Result != meshmon.TaskCodeRefused || a.By != tenancy.AdminCredsUser || a.Error != "site hq has no device nope" {
			t.Fatalf("the refused poll-now's record: %+v", a)
		}
		return nil
	})
}

// spoof: with the admin's credential, a request on another user's
// subject is refused by the server, and a request that names another
// user in its body is recorded as the admin's.
func (m *taskMesh) spoof(ctx context.Context) {
	t := m.t
	body := []byte(`{"id":"spoofed1","verb":"ping","site":"hq","by":"mallory","address":"127.0.0.1"}`)
	creds, err := m.st.AdminCreds("acme", 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := connectCreds(t, m.central.ClientURL(), creds)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish(meshmon.TaskSubject("hq", "mallory", meshmon.TaskPing), body); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	eventually.NoError(t, 5*time.Second, "the server's refusal of a request as mallory", func() error {
		if err := nc.LastError(); err == nil || !strings.Contains(err.Error(), "Permissions Violation") {
			return fmt.Errorf("last error %v", err)
		}
		return nil
	})
	if err := nc.Publish(meshmon.TaskSubject("hq", tenancy.AdminCredsUser, meshmon.TaskPing), body); err != nil {
		t.Fatal(err)
	}
	eventually.NoError(t, 30*time.Second, "the ping's audit event", func() error {
		a, err := m.lastTaskEvent(ctx, "ev.hq._site.task")
		if err != nil {
			return err
		}
		if a.ID != "spoofed1" {
			return fmt.Errorf("last site task %s", a.ID)
		}
		if a.By != tenancy.AdminCredsUser {
			t.Fatalf("a request saying by mallory on %s's subject was recorded as by %q", tenancy.AdminCredsUser, a.By)
		}
		return nil
	})
}

// opsTasks: a user of the ops account runs a task at acme's site hq, as
// itself, recorded as ops:<user>; it cannot send as another ops user nor
// as a tenant's user, and tenant beta has no site hq.
func (m *taskMesh) opsTasks(ctx context.Context) {
	t := m.t
	creds, err := m.st.OpsCreds("olga", 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := connectCreds(t, m.central.ClientURL(), creds)
	if err != nil {
		t.Fatal(err)
	}
	req := task(meshmon.TaskSNMPGet)
	a := m.sim.Agents()[3]
	req.By, req.Address, req.Port, req.OIDs = "olga", a.Addr().Addr().String(), int(a.Addr().Port()), []string{"1.3.6.1.2.1.1.5.0"}
	replies, err := collectOps(ctx, nc, req, "acme")
	if err != nil {
		t.Fatalf("snmp-get by ops user olga at acme's hq: %v", err)
	}
	if vb := allVarbinds(replies); len(vb) != 1 || vb[0].Value != a.Name() {
		t.Fatalf("snmp-get by olga: %+v", vb)
	}
	eventually.NoError(t, 30*time.Second, "olga's audit event", func() error {
		au, err := m.lastTaskEvent(ctx, "ev.hq._site.task")
		if err != nil {
			return err
		}
		if au.ID != req.ID {
			return fmt.Errorf("last site task %s", au.ID)
		}
		if au.By != "ops:olga" {
			t.Fatalf("olga's snmp-get recorded as by %q, want ops:olga", au.By)
		}
		return nil
	})
	// Device tasks too (the whois goes the same way).
	req = task(meshmon.TaskPollNow)
	req.By, req.Device = "olga", m.sim.Agents()[0].Name()
	if replies, err = collectOps(ctx, nc, req, "acme"); err != nil || !strings.Contains(samples(replies), "system") {
		t.Fatalf("poll-now by olga: %v, %q", err, samples(replies))
	}
	// Not as another: the server refuses.
	for _, subj := range []string{
		meshmon.TaskOpsPrefix("acme") + meshmon.TaskOpsSubject("hq", "ivan", meshmon.TaskPing),
		meshmon.TaskOpsPrefix("acme") + meshmon.TaskSubject("hq", "olga", meshmon.TaskPing),
		meshmon.TaskSubject("hq", "olga", meshmon.TaskPing),
	} {
		req := task(meshmon.TaskPing)
		req.By, req.Address = "olga", "127.0.0.1"
		b, _ := json.Marshal(req)
		onc, err := connectCreds(t, m.central.ClientURL(), creds)
		if err != nil {
			t.Fatal(err)
		}
		_ = onc.Publish(subj, b)
		_ = onc.Flush()
		eventually.NoError(t, 5*time.Second, "the server's refusal of "+subj, func() error {
			if err := onc.LastError(); err == nil || !strings.Contains(err.Error(), "Permissions Violation") {
				return fmt.Errorf("last error %v", err)
			}
			return nil
		})
	}
	// Tenant beta has no site hq: nothing answers.
	req = task(meshmon.TaskPing)
	req.By, req.Address = "olga", "127.0.0.1"
	if err := bus.RunTask(ctx, nc, req, bus.TaskOptions{Reach: time.Second, OpsTenant: "beta"}); !errors.Is(err, bus.ErrSiteOffline) {
		t.Fatalf("ping by olga at beta's hq: %v, want %v", err, bus.ErrSiteOffline)
	}
}

func collectOps(ctx context.Context, nc *nats.Conn, req meshmon.TaskRequest, tenant string) ([]meshmon.TaskReply, error) {
	var mu sync.Mutex
	var out []meshmon.TaskReply
	err := bus.RunTask(ctx, nc, req, bus.TaskOptions{Reach: 5 * time.Second, OpsTenant: tenant, OnReply: func(r meshmon.TaskReply) {
		mu.Lock()
		out = append(out, r)
		mu.Unlock()
	}})
	return out, err
}

// bigWalk: a walk of an agent's ifTable with 64 interfaces (8 columns of
// 64 rows), from central, comes back in replies of 100 objects, numbered without a
// gap (RunTask checks), whole and in order: the OIDs a walk at the site's
// side gets, in the same order.
func (m *taskMesh) bigWalk(ctx context.Context, inv *bus.Inventory) {
	t := m.t
	port, err := freeport.Port("udp")
	if err != nil {
		t.Fatal(err)
	}
	cfg := sim.DefaultConfig()
	base := m.prefix.Addr().As4()
	base[2]++ // the /24 after the agents' (their /22 is theirs)
	base[3] = 1
	cfg.Agents, cfg.BaseAddr, cfg.Port, cfg.Interfaces, cfg.NamePrefix = 1, netip.AddrFrom4(base), port, 64, "big"
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	d := s.Agents()[0].Device(time.Hour, time.Second, "public")
	if _, err := inv.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	const ifTable = "1.3.6.1.2.1.2.2"
	pr, err := poller.NewSNMPProber(d)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	if err := pr.Walk(ctx, ifTable, func(v meshmon.Varbind) error { want = append(want, v.OID); return nil }); err != nil {
		t.Fatal(err)
	}
	req := task(meshmon.TaskWalk)
	req.Device, req.OIDs = d.Name, []string{ifTable}
	var replies []meshmon.TaskReply
	eventually.NoError(t, 30*time.Second, "walk of "+d.Name, func() (err error) {
		req.ID = nuid.Next()
		replies, err = collectReach(ctx, m.admin, req, time.Second)
		return err
	})
	chunks := 0
	var got []string
	for _, r := range replies {
		if len(r.Varbinds) > 0 {
			chunks++
		}
		for _, v := range r.Varbinds {
			got = append(got, v.OID)
		}
	}
	if len(want) < 8*64 || chunks != (len(want)+99)/100 {
		t.Fatalf("walk of %s's ifTable: %d objects in %d replies", d.Name, len(want), chunks)
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("walk of %s from central: %d objects, want the %d of a walk at the site, in order", d.Name, len(got), len(want))
	}
}

// cancelled: a discovery the requester gives up (Ctrl-C) stops at the
// site, whose audit event says so.
func (m *taskMesh) cancelled(ctx context.Context) {
	t := m.t
	req := task(meshmon.TaskDiscover)
	req.CIDR, req.Rate = m.prefix.String(), 5 // a minute at least
	rctx, cancel := context.WithCancel(ctx)
	err := bus.RunTask(rctx, m.admin, req, bus.TaskOptions{OnReply: func(r meshmon.TaskReply) {
		if r.Progress != nil {
			cancel()
		}
	}})
	cancel()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("a discovery cancelled after its first progress: %v", err)
	}
	js, err := jetstream.New(m.admin)
	if err != nil {
		t.Fatal(err)
	}
	eventually.NoError(t, 30*time.Second, "the cancelled discovery's audit event", func() error {
		s, err := js.Stream(ctx, bus.EventsStream)
		if err != nil {
			return err
		}
		msg, err := s.GetLastMsgForSubject(ctx, "ev.hq._site.task")
		if err != nil {
			return err
		}
		var ev meshmon.Event
		if err := json.Unmarshal(msg.Data, &ev); err != nil {
			return err
		}
		if a := ev.Data.Task; a == nil || a.ID != req.ID || a.Result != meshmon.TaskCodeCancelled {
			return fmt.Errorf("last site task event: %+v", ev.Data.Task)
		}
		return nil
	})
}

// cutDiscovery: the link cut while a discovery runs, the requester gives
// up once its replies stop for Idle, saying the site stopped answering.
// The link stays cut.
func (m *taskMesh) cutDiscovery(ctx context.Context) {
	t := m.t
	req := task(meshmon.TaskDiscover)
	req.CIDR, req.Rate = m.prefix.String(), 5 // a minute at least
	var once sync.Once
	start := time.Now()
	err := bus.RunTask(ctx, m.admin, req, bus.TaskOptions{Idle: 2 * time.Second, OnReply: func(r meshmon.TaskReply) {
		if r.Progress != nil && r.Progress.Phase != meshmon.TaskStarted {
			once.Do(func() { start = time.Now(); m.proxy.Cut(true) })
		}
	}})
	if !errors.Is(err, bus.ErrTaskTimeout) || !strings.Contains(err.Error(), "site hq stopped answering task discover (no reply in 2s)") {
		t.Fatalf("a discovery whose link is cut as it runs: %v, want site hq stopped answering task discover (no reply in 2s)", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the discovery gave up %s after the cut; its idle limit is 2s", took)
	}
}

// snmpd: the device tasks and a discovery against a real net-snmp agent,
// added from central.
func (m *taskMesh) snmpd(ctx context.Context, inv *bus.Inventory) {
	t := m.t
	port := startSNMPD(t)
	d := meshmon.Device{Name: "snmpd", Address: "127.0.0.1", Checks: []string{meshmon.CheckSNMP}, Interval: meshmon.Duration(time.Minute),
		Timeout: meshmon.Duration(time.Second), Retries: 1, SNMP: &meshmon.SNMP{Version: meshmon.SNMPv2c, Community: "public", Port: port}}
	if _, err := inv.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	var replies []meshmon.TaskReply
	eventually.NoError(t, 30*time.Second, "poll-now of snmpd", func() (err error) {
		req := task(meshmon.TaskPollNow)
		req.Device = "snmpd"
		replies, err = collectReach(ctx, m.admin, req, time.Second)
		return err
	})
	if got := samples(replies); !strings.Contains(got, "system") {
		t.Fatalf("poll-now of snmpd: checks %q", got)
	}
	req := task(meshmon.TaskWalk)
	req.Device, req.OIDs = "snmpd", []string{"1.3.6.1.2.1.1"}
	replies, err := collect(ctx, m.admin, req)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range replies {
		for _, v := range r.Varbinds {
			found = found || v.OID == "1.3.6.1.2.1.1.5.0" && v.Value == "meshmon-tasks-snmpd"
		}
	}
	if !found {
		t.Fatalf("walk of snmpd's system group: no sysName in %d replies", len(replies))
	}
	req = task(meshmon.TaskSNMPGet)
	req.Address, req.Port, req.OIDs = "127.0.0.1", port, []string{"1.3.6.1.2.1.1.5.0", "1.3.6.1.2.1.1.2.0"}
	if replies, err = collect(ctx, m.admin, req); err != nil {
		t.Fatal(err)
	}
	if vb := allVarbinds(replies); len(vb) != 2 || vb[0].Value != "meshmon-tasks-snmpd" {
		t.Fatalf("snmp-get at snmpd: %+v", vb)
	}
	// A discovery of its one address finds it by SNMP, with the site's
	// community; it serves no LLDP-MIB, so no neighbours (and no error).
	req = task(meshmon.TaskDiscover)
	req.CIDR, req.Port = "127.0.0.1/32", port
	if replies, err = collect(ctx, m.admin, req); err != nil {
		t.Fatal(err)
	}
	var cands []meshmon.Candidate
	for _, r := range replies {
		cands = append(cands, r.Candidates...)
	}
	if len(cands) != 1 || !cands[0].SNMP || cands[0].SysName != "meshmon-tasks-snmpd" || cands[0].Name != "meshmon-tasks-snmpd" ||
		!strings.HasPrefix(strings.TrimPrefix(cands[0].SysObjectID, "."), "1.3.6.1.4.1.8072.") || cands[0].Interfaces == 0 || len(cands[0].Neighbors) != 0 {
		t.Fatalf("discovery of snmpd at 127.0.0.1/32: %+v", cands)
	}
}

// startSNMPD runs net-snmp's snmpd on a free loopback port with community
// public until the test ends, and returns the port once it answers.
func startSNMPD(t testing.TB) int {
	bin, err := exec.LookPath("snmpd")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("snmpd is required under CI=true: %v", err)
		}
		t.Skipf("snmpd not installed: %v", err)
	}
	port, err := freeport.Port("udp")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "snmpd.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("[snmp] persistentDir %s\nrocommunity public 127.0.0.1\nsysName meshmon-tasks-snmpd\n", dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-f", "-Lo", "-C", "-c", conf, "-p", filepath.Join(dir, "snmpd.pid"), fmt.Sprintf("udp:127.0.0.1:%d", port))
	cmd.Env = append(os.Environ(), "SNMPCONFPATH="+dir, "SNMP_PERSISTENT_DIR="+dir, "MIBS=", "MIBDIRS="+dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	pr, err := poller.NewSNMPProber(meshmon.Device{Name: "snmpd", Address: "127.0.0.1", Checks: []string{meshmon.CheckSNMP},
		Timeout: meshmon.Duration(200 * time.Millisecond), SNMP: &meshmon.SNMP{Version: meshmon.SNMPv2c, Community: "public", Port: port}})
	if err != nil {
		t.Fatal(err)
	}
	eventually.NoError(t, 15*time.Second, "snmpd to answer", func() error {
		_, err := pr.Get(context.Background(), []string{"1.3.6.1.2.1.1.5.0"})
		return err
	})
	return port
}

// TestDiscover22: a discovery of a /22 of simulated agents (1,016: the
// simulator skips .0 and .255) from central, through the site's leaf
// link, at the highest rate, finds every one of them. BenchmarkDiscover22
// times the same discovery.
func TestDiscover22(t *testing.T) {
	discover := startDiscover22(t)
	discover()
}

// BenchmarkDiscover22 discovers a /22 of simulated agents from central
// as TestDiscover22 does, and prints the addresses swept and the agents
// found a second. Run: go test -run - -bench Discover22 ./bus/pollerlink/
func BenchmarkDiscover22(b *testing.B) {
	discover := startDiscover22(b)
	b.ResetTimer()
	for range b.N {
		discover()
	}
	s := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(1022/s, "addrs/s")
	b.ReportMetric(1016/s, "agents/s")
	b.ReportMetric(0, "ns/op")
}

// startDiscover22 starts a mesh with a /22 of 1,016 agents and waits for
// its poller to take tasks; the discover it returns runs one discovery of the /22 at the
// highest rate from central and fails tb unless it finds every agent by
// SNMP.
func startDiscover22(tb testing.TB) (discover func()) {
	m := startTaskMesh(tb, 1016, sim.TopologyNone)
	ctx := context.Background()
	eventually.NoError(tb, 30*time.Second, "the site's poller to take tasks", func() error {
		req := task(meshmon.TaskSNMPGet)
		req.Address, req.Port, req.OIDs = m.sim.Agents()[0].Addr().Addr().String(), int(m.sim.Agents()[0].Addr().Port()), []string{"1.3.6.1.2.1.1.5.0"}
		req.Credentials = []meshmon.SNMP{{Version: meshmon.SNMPv2c, Community: "public"}}
		_, err := collectReach(ctx, m.admin, req, time.Second)
		return err
	})
	return func() {
		tb.Helper()
		req := task(meshmon.TaskDiscover)
		req.CIDR, req.Port, req.Rate = m.prefix.String(), int(m.sim.Agents()[0].Addr().Port()), meshmon.DiscoverMaxRate
		req.Credentials = []meshmon.SNMP{{Version: meshmon.SNMPv2c, Community: "public"}}
		req.Timeout = meshmon.Duration(10 * time.Minute)
		replies, err := collect(ctx, m.admin, req)
		if err != nil {
			tb.Fatal(err)
		}
		found, icmpOnly := map[string]bool{}, map[string]bool{}
		for _, r := range replies {
			for _, c := range r.Candidates {
				if c.SNMP {
					found[c.SysName] = true
				} else if c.ICMP {
					icmpOnly[c.Address] = true
				}
			}
		}
		// Which were missed, and whether the sweep or SNMP missed them.
		var missing []string
		for _, a := range m.sim.Agents() {
			if !found[a.Name()] {
				missing = append(missing, fmt.Sprintf("%s (%s, answered ICMP: %v)", a.Name(), a.Addr().Addr(), icmpOnly[a.Addr().Addr().String()]))
			}
		}
		if len(m.sim.Agents()) != 1016 || len(missing) > 0 || len(found) != 1016 {
			tb.Fatalf("discovery of %s found %d agents by SNMP, %d of the %d simulated missing; want all 1016: %s",
				m.prefix, len(found), len(missing), len(m.sim.Agents()), strings.Join(missing, ", "))
		}
	}
}
