package poller_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/peer"
	"github.com/meshmon/meshmon/poller"
	"github.com/meshmon/meshmon/sim"
	"github.com/meshmon/meshmon/storage"
)

// env is a real peer, a real simulator and a poller in this process.
type env struct {
	t     *testing.T
	dir   string
	peer  *peer.Peer
	url   string
	nc    *nats.Conn
	js    jetstream.JetStream
	sim   *sim.Sim
	store string // the poller's bbolt file
	spool int64  // the poller's MaxSpoolBytes; 0 is unlimited
	// ackWait is the poller's publisher's AckWait; 0 is bus.DefaultAckWait.
	ackWait time.Duration
}

func startPeer(t *testing.T, dir, listen string) *peer.Peer {
	t.Helper()
	cfg := peer.DefaultConfig()
	cfg.Name, cfg.Site, cfg.DataDir, cfg.Listen = "p", "lab", filepath.Join(dir, "peer"), listen
	cfg.Insecure = true
	p, _ := startPeerCfg(t, cfg)
	return p
}

// startPeerCfg starts a peer of cfg and returns it and its client URL.
func startPeerCfg(t *testing.T, cfg peer.Config) (*peer.Peer, string) {
	t.Helper()
	p, err := peer.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p, p.ClientURL()
}

func newEnv(t *testing.T, agents int, base string) *env {
	return newEnvChecks(t, agents, base, meshmon.CheckSNMP)
}

func newEnvChecks(t *testing.T, agents int, base string, checks ...string) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir()}
	e.store = filepath.Join(e.dir, "poller.db")
	e.peer = startPeer(t, e.dir, "127.0.0.1:0")
	e.url = e.peer.ClientURL()
	e.addSim(agents, base, checks...)
	return e
}

// addSim connects to the env's peer and adds agents simulated devices,
// polled every second, to its inventory.
func (e *env) addSim(agents int, base string, checks ...string) {
	t := e.t
	t.Helper()
	nc, err := bus.Connect(bus.ConnConfig{URL: e.url})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	e.nc = nc
	e.js, _ = jetstream.New(nc)

	scfg := sim.DefaultConfig()
	scfg.Agents, scfg.NamePrefix = agents, "d"
	scfg.BaseAddr = mustAddr(t, base)
	s, err := sim.New(scfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	e.sim = s

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	inv, err := bus.OpenInventory(ctx, e.js)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range s.Agents() {
		d := meshmon.Device{Name: a.Name(), Address: a.Addr().Addr().String(), Checks: checks,
			Interval: meshmon.Duration(time.Second), Timeout: meshmon.Duration(200 * time.Millisecond), Retries: 0,
			SNMP: &meshmon.SNMP{Version: meshmon.SNMPv2c, Port: int(a.Addr().Port()), Community: "public"}}
		if _, err := inv.Put(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
}

// device returns the inventory and one device from it.
func (e *env) device(ctx context.Context, name string) (*bus.Inventory, meshmon.Device) {
	e.t.Helper()
	inv, err := bus.OpenInventory(ctx, e.js)
	if err != nil {
		e.t.Fatal(err)
	}
	d, err := inv.Get(ctx, name)
	if err != nil {
		e.t.Fatal(err)
	}
	return inv, d
}

// runPoller runs a poller against the env's peer until the returned stop
// function is called.
func (e *env) runPoller(cfgMod func(*poller.Config)) (*poller.Poller, func()) {
	e.t.Helper()
	store, err := storage.Open(e.store, storage.Options{MaxSpoolBytes: e.spool})
	if err != nil {
		e.t.Fatal(err)
	}
	nc, err := bus.Connect(bus.ConnConfig{URL: e.url}, nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		e.t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	inv, err := bus.OpenInventory(context.Background(), js)
	if err != nil {
		e.t.Fatal(err)
	}
	reg, err := bus.OpenRegistry(context.Background(), js)
	if err != nil {
		e.t.Fatal(err)
	}
	cfg := poller.DefaultConfig()
	cfg.Name, cfg.Site = "p1", "lab"
	cfg.HeartbeatEvery = 200 * time.Millisecond
	cfg.PublishTimeout = time.Second
	if cfgMod != nil {
		cfgMod(&cfg)
	}
	pub := bus.NewPublisher(js)
	if e.ackWait > 0 {
		pub.AckWait = e.ackWait
	}
	p, err := poller.New(cfg, nil, store, pub, inv, reg)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := p.Run(ctx); err != nil {
			e.t.Errorf("poller run: %v", err)
		}
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			nc.Close()
			store.Close()
		})
	}
	e.t.Cleanup(stop)
	<-p.Ready()
	return p, stop
}

// events returns every event in EVENTS on filter, in stream order.
func (e *env) events(filter string) []meshmon.Event {
	e.t.Helper()
	var out []meshmon.Event
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := bus.Tail(ctx, e.js, bus.TailOptions{Stream: bus.EventsStream, Subject: filter, StartSeq: 1, Live: false}, func(m bus.TailMsg) error {
		var ev meshmon.Event
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			e.t.Fatalf("event %s: %v", m.Subject, err)
		}
		out = append(out, ev)
		return nil
	})
	if err != nil {
		e.t.Fatalf("tail: %v", err)
	}
	return out
}

// storedSample is a sample as the METRICS stream holds it.
type storedSample struct {
	meshmon.Sample
	ID string // Nats-Msg-Id
}

// metrics returns the samples in the METRICS stream matching filter.
func (e *env) metrics(filter string) []storedSample {
	e.t.Helper()
	var out []storedSample
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := bus.Tail(ctx, e.js, bus.TailOptions{Stream: bus.MetricsStream, Subject: filter, StartSeq: 1, Live: false}, func(m bus.TailMsg) error {
		var s meshmon.Sample
		if err := json.Unmarshal(m.Data, &s); err != nil {
			e.t.Fatalf("sample %s: %v", m.Subject, err)
		}
		out = append(out, storedSample{s, m.Header.Get("Nats-Msg-Id")})
		return nil
	})
	if err != nil {
		e.t.Fatalf("tail: %v", err)
	}
	return out
}

func (e *env) waitKinds(dev string, want ...string) []meshmon.Event {
	e.t.Helper()
	var got []meshmon.Event
	eventually.NoError(e.t, 20*time.Second, dev+" events "+join(want), func() error {
		if got = e.events("ev.lab." + dev + ".>"); len(got) < len(want) {
			return fmt.Errorf("have %v", kinds(got))
		}
		return nil
	})
	for i, k := range want {
		if got[i].Data.Kind != k {
			e.t.Fatalf("%s: event %d is %s, want %s (all: %v)", dev, i, got[i].Data.Kind, k, kinds(got))
		}
	}
	return got
}

func kinds(evs []meshmon.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.Data.Kind
	}
	return out
}

func join(s []string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func mustAddr(t *testing.T, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestPollerTurnsFaultsIntoEvents drives faults on simulated agents and
// finds the events, with CloudEvents fields and samples, in the streams.
func TestPollerTurnsFaultsIntoEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 3, "127.90.0.1")
	p, _ := e.runPoller(nil)
	a := e.sim.Agents()
	eventually.True(t, 20*time.Second, "every device polled", func() bool { return p.Stats().Polls >= 6 })

	if err := a[0].SetIfOper(2, false); err != nil {
		t.Fatal(err)
	}
	evs := e.waitKinds(a[0].Name(), meshmon.KindIfDown)
	ev := evs[0]
	if ev.SpecVersion != "1.0" || ev.Type != "meshmon.if_down" || ev.Subject != a[0].Name() || ev.Data.IfIndex != 2 ||
		ev.Data.Check != "if.2" || ev.Source != "/meshmon/default/lab/p1" || ev.ID == "" || ev.Data.Previous != "up" {
		t.Errorf("if_down event: %+v", ev)
	}
	_ = a[0].SetIfOper(2, true)
	e.waitKinds(a[0].Name(), meshmon.KindIfDown, meshmon.KindIfUp)

	a[1].Reboot()
	e.waitKinds(a[1].Name(), meshmon.KindReboot)

	a[2].Down(true)
	evs = e.waitKinds(a[2].Name(), meshmon.KindSNMPUnreachable)
	if evs[0].Data.Reason == "" || evs[0].Data.Severity != meshmon.SeverityMajor {
		t.Errorf("unreachable event: %+v", evs[0].Data)
	}
	a[2].Down(false)
	e.waitKinds(a[2].Name(), meshmon.KindSNMPUnreachable, meshmon.KindSNMPReachable)

	// Samples carry the agent's sysName and interface counters.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var sys meshmon.Sample
	err := bus.Tail(ctx, e.js, bus.TailOptions{Stream: bus.MetricsStream, Subject: "mx.lab." + a[0].Name() + ".system", StartSeq: 1}, func(m bus.TailMsg) error {
		return json.Unmarshal(m.Data, &sys)
	})
	if err != nil || sys.Labels["sys_name"] != a[0].Name() || sys.Values["uptime_seconds"] <= 0 {
		t.Errorf("system sample %+v (err %v)", sys, err)
	}
}

// TestPollerSpoolsWhilePeerIsAway stops the peer, injects faults, brings the
// peer back on the same address and data, and finds every event once.
func TestPollerSpoolsWhilePeerIsAway(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2, "127.91.0.1")
	p, _ := e.runPoller(nil)
	a := e.sim.Agents()
	// A reboot is told from jitter by the boot time moving a few seconds:
	// let the agents run a while first.
	eventually.True(t, 20*time.Second, "first polls and some uptime", func() bool { return p.Stats().Polls >= 4 && a[1].Uptime() > 5*time.Second })

	listen := e.url[len("nats://"):]
	e.peer.Close()
	_ = a[0].SetIfOper(1, false)
	a[1].Reboot()
	eventually.True(t, 20*time.Second, "events spooled while the peer is away", func() bool { return p.Stats().Spooled >= 10 })
	_ = a[0].SetIfOper(1, true)
	polls := p.Stats().Polls
	eventually.True(t, 20*time.Second, "more polls", func() bool { return p.Stats().Polls >= polls+4 })

	e.peer = startPeer(t, e.dir, listen)
	e.waitKinds(a[0].Name(), meshmon.KindIfDown, meshmon.KindIfUp)
	e.waitKinds(a[1].Name(), meshmon.KindReboot)
	eventually.True(t, 20*time.Second, "spool drained", func() bool { return p.Stats().Spooled == 0 })

	// The inventory watch survived the peer's restart.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	inv, err := bus.OpenInventory(ctx, e.js)
	if err != nil {
		t.Fatal(err)
	}
	if err := inv.Delete(ctx, a[0].Name()); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 20*time.Second, "the poller to drop a device deleted after the restart", func() bool { return p.Stats().Devices == 1 })
	seen := map[string]bool{}
	for _, ev := range e.events("ev.>") {
		if seen[ev.ID] {
			t.Errorf("event %s stored twice", ev.ID)
		}
		seen[ev.ID] = true
	}
}

// TestPollerRestartDoesNotRepeatEvents restarts the poller on the same
// bbolt file: known states are not announced again, and a change made while
// it was down is announced once. Not parallel: its leak check sees every
// poller of the process.
func TestPollerRestartDoesNotRepeatEvents(t *testing.T) {
	e := newEnv(t, 1, "127.92.0.1")
	a := e.sim.Agents()[0]
	p, stop := e.runPoller(nil)
	eventually.True(t, 20*time.Second, "first polls", func() bool { return p.Stats().Polls >= 2 })
	_ = a.SetIfOper(1, false)
	e.waitKinds(a.Name(), meshmon.KindIfDown)
	if len(ownGoroutines()) == 0 {
		t.Fatal("the leak check sees no poller goroutines while the poller runs")
	}
	stop()
	// Run returned: none of the goroutines it, the spool or the bus
	// helpers started remain. (Server-side goroutines of the embedded peer,
	// such as its consumers, are not the poller's and are not counted.)
	eventually.True(t, 10*time.Second, "the poller's goroutines to end", func() bool { return len(ownGoroutines()) == 0 })

	_ = a.SetIfOper(3, false) // changed while the poller was down
	p, _ = e.runPoller(nil)
	eventually.True(t, 20*time.Second, "polls after restart", func() bool { return p.Stats().Polls >= 4 })
	e.waitKinds(a.Name(), meshmon.KindIfDown, meshmon.KindIfDown)
	evs := e.events("ev.lab." + a.Name() + ".>")
	if len(evs) != 2 || evs[1].Data.IfIndex != 3 {
		t.Fatalf("after restart want exactly one new if_down (ifIndex 3), got %v", kinds(evs))
	}
}

// TestPollerFullSpool fills a small spool while the peer is away: the
// poller keeps running, counts what it could not keep, loses nothing it had
// accepted, and reports a change it could not spool once there is room.
func TestPollerFullSpool(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2, "127.93.0.1")
	e.spool = 16 << 10
	p, _ := e.runPoller(nil)
	a := e.sim.Agents()
	eventually.True(t, 20*time.Second, "first polls", func() bool { return p.Stats().Polls >= 4 })

	listen := e.url[len("nats://"):]
	e.peer.Close()
	_ = a[0].SetIfOper(1, false)
	eventually.True(t, 30*time.Second, "the spool to fill up", func() bool { return p.Stats().Dropped > 0 })
	_ = a[0].SetIfOper(1, true) // observed while full: cannot be spooled yet
	polls := p.Stats().Polls
	eventually.True(t, 20*time.Second, "polling to go on with a full spool", func() bool { return p.Stats().Polls >= polls+4 })

	e.peer = startPeer(t, e.dir, listen)
	e.waitKinds(a[0].Name(), meshmon.KindIfDown, meshmon.KindIfUp)
	if st := p.Stats(); st.Dropped == 0 || st.Published == 0 {
		t.Errorf("stats after recovery: %+v", st)
	}
}

// TestPollerICMPEvents drops ICMP to a loopback address with iptables and
// sees node_down, then node_up when the rule goes.
func TestPollerICMPEvents(t *testing.T) {
	ipt := needRootTool(t, "iptables")
	e := newEnvChecks(t, 1, "127.94.0.1", meshmon.CheckICMP)
	p, _ := e.runPoller(func(c *poller.Config) { c.ICMPCount = 2; c.ICMPInterval = 50 * time.Millisecond })
	a := e.sim.Agents()[0]
	addr := a.Addr().Addr().String()
	eventually.True(t, 20*time.Second, "first polls", func() bool { return p.Stats().Polls >= 2 })
	if evs := e.events("ev.lab." + a.Name() + ".>"); len(evs) != 0 {
		t.Fatalf("a reachable node has events: %v", kinds(evs))
	}
	rule := []string{"INPUT", "-d", addr, "-p", "icmp", "-j", "DROP"}
	if out, err := exec.Command(ipt, append([]string{"-I"}, rule...)...).CombinedOutput(); err != nil {
		t.Fatalf("iptables: %v: %s", err, out)
	}
	removed := false
	unblock := func() {
		if !removed {
			removed = true
			_ = exec.Command(ipt, append([]string{"-D"}, rule...)...).Run()
		}
	}
	t.Cleanup(unblock)
	evs := e.waitKinds(a.Name(), meshmon.KindNodeDown)
	if evs[0].Data.Severity != meshmon.SeverityCritical || evs[0].Data.Check != meshmon.CheckICMP || evs[0].Data.Reason == "" {
		t.Errorf("node_down: %+v", evs[0].Data)
	}
	unblock()
	e.waitKinds(a.Name(), meshmon.KindNodeDown, meshmon.KindNodeUp)
}

// needRootTool returns the path of a tool that needs root, or skips; under
// CI=true it fails instead of skipping.
func needRootTool(t *testing.T, tool string) string {
	t.Helper()
	path, err := exec.LookPath(tool)
	switch {
	case err == nil && os.Geteuid() == 0:
		return path
	case os.Getenv("CI") == "true":
		t.Fatalf("%s as root is required under CI=true (uid %d, %v)", tool, os.Geteuid(), err)
	default:
		t.Skipf("needs root and %s (uid %d, %v)", tool, os.Geteuid(), err)
	}
	return ""
}

// TestSNMPv3KeepsEngineNotSocket polls a simulated v3 agent three times:
// only the first poll pays for engine discovery, although no socket is kept
// open between polls.
func TestSNMPv3KeepsEngineNotSocket(t *testing.T) {
	scfg := sim.DefaultConfig()
	scfg.Agents, scfg.BaseAddr = 1, mustAddr(t, "127.95.0.1")
	s, err := sim.New(scfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	a := s.Agents()[0]
	u := scfg.Users[0]
	d := meshmon.Device{Name: "v3", Address: a.Addr().Addr().String(), Checks: []string{meshmon.CheckSNMP}, Interval: meshmon.Duration(time.Minute),
		SNMP: &meshmon.SNMP{Version: meshmon.SNMPv3, Port: int(a.Addr().Port()), User: u.Name,
			AuthProtocol: u.AuthProtocol, AuthPassword: u.AuthPassword, PrivProtocol: u.PrivProtocol, PrivPassword: u.PrivPassword}}
	pr, err := poller.NewSNMPProber(d)
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	var deltas []uint64
	for range 3 {
		before := a.Answered()
		if r := pr.Poll(context.Background()); !r.OK {
			t.Fatalf("poll: %s: %v", r.Reason, r.Err)
		}
		deltas = append(deltas, a.Answered()-before)
	}
	if deltas[1] != deltas[2] || deltas[0] != deltas[1]+1 {
		t.Fatalf("requests per poll %v: want the first to have one more (discovery) and the rest equal", deltas)
	}
	a.Reboot() // new engine boots: the next poll resynchronises by itself
	if r := pr.Poll(context.Background()); !r.OK {
		t.Fatalf("poll after reboot: %s: %v", r.Reason, r.Err)
	}
}

// TestPollerCounterWrap starts a 32-bit counter just below 2^32 on an SNMPv1
// agent (v1 has no 64-bit counters) and checks the rate across the wrap.
func TestPollerCounterWrap(t *testing.T) {
	e := newEnv(t, 1, "127.96.0.1")
	a := e.sim.Agents()[0]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	inv, d := e.device(ctx, a.Name())
	d.SNMP.Version = meshmon.SNMPv1
	if _, err := inv.Put(ctx, d); err != nil {
		t.Fatal(err)
	}
	if err := a.SetCounterBase(1, 1<<32-3_000_000); err != nil {
		t.Fatal(err)
	}
	e.runPoller(nil)

	var prev *meshmon.InterfaceSample
	eventually.True(t, 30*time.Second, "a sample across the wrap of ifInOctets.1", func() bool {
		var samples []meshmon.Sample
		err := bus.Tail(ctx, e.js, bus.TailOptions{Stream: bus.MetricsStream, Subject: "mx.lab." + a.Name() + ".if", StartSeq: 1}, func(m bus.TailMsg) error {
			var s meshmon.Sample
			if err := json.Unmarshal(m.Data, &s); err != nil {
				return err
			}
			samples = append(samples, s)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		prev = nil
		for _, s := range samples {
			cur := s.Interfaces[0]
			if cur.HighCounter {
				t.Fatalf("v1 sample uses 64-bit counters: %+v", cur)
			}
			if prev != nil && cur.InOctets < prev.InOctets {
				// The wrap: the rate must be the agent's few Mbit/s, not 2^32.
				if cur.InBps <= 0 || cur.InBps > 100e6 {
					t.Fatalf("rate across the wrap is %.0f bit/s (from %d to %d octets)", cur.InBps, prev.InOctets, cur.InOctets)
				}
				return true
			}
			prev = &cur
		}
		return false
	})
}

// ownGoroutines returns the stacks of live goroutines running code of the
// poller, storage or bus packages (not their tests).
func ownGoroutines() []string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "poller_test.") {
			continue
		}
		for _, pkg := range []string{"meshmon/meshmon/poller.", "meshmon/meshmon/storage.", "meshmon/meshmon/bus."} {
			if strings.Contains(g, pkg) {
				out = append(out, g)
				break
			}
		}
	}
	return out
}

// TestPollerNeverPollsADeviceTwiceAtOnce changes a slow device's settings
// again and again while it is being polled: the new settings wait for the
// running poll, so the agent never sees two requests at once.
func TestPollerNeverPollsADeviceTwiceAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1, "127.97.0.1")
	a := e.sim.Agents()[0]
	a.SetDelay(250 * time.Millisecond) // a poll takes two or three of these
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	inv, d := e.device(ctx, a.Name())
	d.Timeout = meshmon.Duration(900 * time.Millisecond)
	if _, err := inv.Put(ctx, d); err != nil {
		t.Fatal(err)
	}
	p, _ := e.runPoller(nil)
	eventually.True(t, 20*time.Second, "a first poll", func() bool { return p.Stats().Polls >= 1 })
	for i := range 12 {
		d.Retries = i % 2
		if _, err := inv.Put(ctx, d); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond) // pacing the changes, not synchronisation
	}
	polls := p.Stats().Polls
	eventually.True(t, 20*time.Second, "more polls", func() bool { return p.Stats().Polls >= polls+3 })
	if peak := a.PeakInFlight(); peak != 1 {
		t.Fatalf("the agent had %d requests in flight at once; a device must never be polled twice at once", peak)
	}
}

// TestPollerFrozenUptimeRaisesNoReboot: an agent whose sysUpTime never
// moves (a recorded agent, broken firmware) is polled many times without a
// single reboot event, while a real reboot of it is still reported.
func TestPollerFrozenUptimeRaisesNoReboot(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1, "127.98.0.1")
	a := e.sim.Agents()[0]
	eventually.True(t, 10*time.Second, "some uptime", func() bool { return a.Uptime() > time.Second })
	a.FreezeUptime(true)
	p, _ := e.runPoller(nil)
	// At one poll a second, 15 polls span 14 s: far past the 3 s the boot
	// time may drift before the old code called it a reboot.
	eventually.True(t, 60*time.Second, "15 polls", func() bool { return p.Stats().Polls >= 15 })
	if evs := e.events("ev.lab." + a.Name() + ".>"); len(evs) != 0 {
		t.Fatalf("a frozen sysUpTime raised events: %s", join(kinds(evs)))
	}
	// A reboot sets the frozen value back to 0: that is a reboot.
	a.Reboot()
	e.waitKinds(a.Name(), meshmon.KindReboot)
}

// TestPollerAcksInformsOnlyWhenSpooled: an inform is acknowledged once its
// event is in the spool, not before, and not at all while the spool cannot
// take it (its sender then retries).
func TestPollerAcksInformsOnlyWhenSpooled(t *testing.T) {
	t.Parallel()
	e := newEnvChecks(t, 1, "127.99.0.1", meshmon.CheckICMP)
	e.spool = 4 << 10
	p, _ := e.runPoller(func(c *poller.Config) { c.TrapListen = "127.0.0.1:0" })
	addr := p.TrapAddr().(*net.UDPAddr)
	sender := &gosnmp.GoSNMP{Target: "127.0.0.1", Port: uint16(addr.Port), Community: "public",
		Version: gosnmp.Version2c, Timeout: 500 * time.Millisecond, Retries: 1}
	if err := sender.Connect(); err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	inform := func(n int) error {
		_, err := sender.SendTrap(gosnmp.SnmpTrap{IsInform: true, Variables: []gosnmp.SnmpPDU{
			{Name: ".1.3.6.1.2.1.1.3.0", Type: gosnmp.TimeTicks, Value: uint32(1000 + n)},
			{Name: ".1.3.6.1.6.3.1.1.4.1.0", Type: gosnmp.ObjectIdentifier, Value: ".1.3.6.1.6.3.1.1.5.1"},
		}})
		return err
	}
	if err := inform(1); err != nil {
		t.Fatalf("inform with room in the spool: %v", err)
	}
	if st := p.Stats(); st.TrapsCommitted < 1 {
		t.Fatalf("inform acknowledged before its event was spooled: %+v", st)
	}

	// With the peer away the spool fills up; then informs go unanswered,
	// and an unanswered one was not stored.
	e.peer.Close()
	var committed uint64
	for i := 2; ; i++ {
		committed = p.Stats().TrapsCommitted
		if err := inform(i); err != nil {
			break
		}
		if i > 1000 {
			t.Fatalf("the spool never filled: %+v", p.Stats())
		}
	}
	if st := p.Stats(); st.TrapsCommitted != committed {
		t.Fatalf("committed %d traps with a full spool", st.TrapsCommitted-committed)
	}
}
