package poller_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/internal/wan"
	"github.com/meshmon/meshmon/peer"
	"github.com/meshmon/meshmon/poller"
	"github.com/meshmon/meshmon/storage"
)

// runMember runs a poller called name in the site's poller group, with its
// own store and connection, until the returned crash function closes its
// connection and stops it (it neither leaves the group nor gives up a
// lease, as when its process is killed).
func (e *env) runMember(name string) func() {
	crash, _ := e.runMemberVia(name, e.url)
	return crash
}

// runMemberVia is runMember with the poller connecting to url.
func (e *env) runMemberVia(name, url string) (func(), *poller.Poller) {
	e.t.Helper()
	return e.runMemberWith(name, url, nil)
}

// runMemberWith is runMemberVia with cfgMod applied to the poller's
// config.
func (e *env) runMemberWith(name, url string, cfgMod func(*poller.Config)) (func(), *poller.Poller) {
	e.t.Helper()
	store, err := storage.Open(filepath.Join(e.dir, "poller-"+name+".db"), storage.Options{})
	if err != nil {
		e.t.Fatal(err)
	}
	nc, err := bus.Connect(bus.ConnConfig{URL: url}, nats.ReconnectWait(50*time.Millisecond), nats.MaxReconnects(-1), nats.ReconnectBufSize(-1))
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
	cfg.Name, cfg.Site = name, "lab"
	cfg.HeartbeatEvery, cfg.MemberTimeout = 250*time.Millisecond, time.Second
	cfg.PublishTimeout = time.Second
	if cfgMod != nil {
		cfgMod(&cfg)
	}
	p, err := poller.New(cfg, nil, store, bus.NewPublisher(js), inv, reg)
	if err != nil {
		e.t.Fatal(err)
	}
	gcfg := bus.DefaultGroupConfig(name, name, "lab")
	gcfg.MemberTimeout = time.Second // the tests' own timing, shorter than the default
	g, err := bus.NewGroup(js, gcfg, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	p.JoinGroup(g)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { g.Run(ctx) })
	wg.Go(func() {
		if err := p.Run(ctx); err != nil {
			e.t.Errorf("poller run: %v", err)
		}
	})
	var once sync.Once
	crash := func() {
		once.Do(func() {
			nc.Close()
			cancel()
			wg.Wait()
			store.Close()
		})
	}
	e.t.Cleanup(crash)
	<-p.Ready()
	return crash, p
}

// lastSamples returns, per device, the newest system sample central... the
// site holds.
func (e *env) lastSamples(devices []string) (map[string]meshmon.Sample, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, bus.MetricsStream)
	if err != nil {
		return nil, err
	}
	out := map[string]meshmon.Sample{}
	for _, d := range devices {
		m, err := s.GetLastMsgForSubject(ctx, meshmon.MetricSubject("lab", d, "system"))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", d, err)
		}
		var smp meshmon.Sample
		if err := json.Unmarshal(m.Data, &smp); err != nil {
			return nil, err
		}
		out[d] = smp
	}
	return out, nil
}

// TestPollerGroupSharesDevices: three pollers of a site share its devices,
// each device polled by the one the assignment names, with the assignment
// revision on its samples; when one crashes its devices are polled by the
// others.
func TestPollerGroupSharesDevices(t *testing.T) {
	e := newEnv(t, 6, "127.61.0.1")
	var devices []string
	for _, a := range e.sim.Agents() {
		devices = append(devices, a.Name())
	}
	crash := map[string]func(){}
	for _, name := range []string{"g1", "g2", "g3"} {
		crash[name] = e.runMember(name)
	}
	ctx := context.Background()
	// waitOwners waits until every device's newest sample comes from its
	// owner in the current assignment, made for members.
	waitOwners := func(members int) meshmon.Assignment {
		t.Helper()
		var a meshmon.Assignment
		eventually.True(t, 20*time.Second, fmt.Sprintf("every device polled by its owner among %d members", members), func() bool {
			kv, err := e.js.KeyValue(ctx, bus.GroupBucket)
			if err != nil {
				return false
			}
			if a, err = bus.ReadAssignment(ctx, kv, "lab"); err != nil || len(a.Members) != members {
				return false
			}
			last, err := e.lastSamples(devices)
			if err != nil {
				return false
			}
			for _, d := range devices {
				if s := last[d]; s.Poller != a.Owners[d] || s.Assignment != a.Revision {
					return false
				}
			}
			return true
		})
		return a
	}
	a := waitOwners(3)
	for _, m := range a.Members {
		if n := len(a.Owned(m)); n != 2 {
			t.Fatalf("%s polls %d devices, want 2: %v", m, n, a.Owners)
		}
	}
	crash["g2"]()
	b := waitOwners(2)
	for d, p := range a.Owners {
		if p != "g2" && b.Owners[d] != p {
			t.Fatalf("device %s moved from %s to %s", d, p, b.Owners[d])
		}
	}
}

// TestPollerGroupPartition: a member cut off from its peer keeps polling
// and spools; the others take its devices over; when it is back, what it
// observed of them after they moved is dropped, so no slot of any device is
// stored twice, even with a duplicate window far shorter than the cut.
// g1 polls through a proxy that cuts it off.
func TestPollerGroupPartition(t *testing.T) {
	t.Parallel()
	e := &env{t: t, dir: t.TempDir()}
	cfg := peer.DefaultConfig()
	cfg.Name, cfg.Site, cfg.DataDir, cfg.Listen = "p", "lab", filepath.Join(e.dir, "peer"), "127.0.0.1:0"
	cfg.Insecure = true
	// A duplicate window longer than a hand-over takes, far shorter than
	// the cut.
	cfg.Limits.MetricsDuplicates = 3 * time.Second
	e.peer, e.url = startPeerCfg(t, cfg)
	e.addSim(6, "127.62.0.1", meshmon.CheckSNMP)
	var devices []string
	for _, a := range e.sim.Agents() {
		devices = append(devices, a.Name())
		// A timeout a loaded machine meets: a poll that times out stores
		// no sample, and with the 200 ms of addSim the cut-off member
		// spooled fewer than the 60 samples waited for below in 30 s
		// (seen once in three runs of the poller suite beside two others).
		inv, d := e.device(context.Background(), a.Name())
		d.Timeout = d.Interval // the most a device may have
		if _, err := inv.Put(context.Background(), d); err != nil {
			t.Fatal(err)
		}
	}
	px, err := wan.NewProxy(strings.TrimPrefix(e.url, "nats://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(px.Close)
	_, cut := e.runMemberVia("g1", "nats://"+px.Addr())
	e.runMember("g2")
	ctx := context.Background()
	owners := func() (meshmon.Assignment, error) {
		kv, err := e.js.KeyValue(ctx, bus.GroupBucket)
		if err != nil {
			return meshmon.Assignment{}, err
		}
		return bus.ReadAssignment(ctx, kv, "lab")
	}
	// Both polling means g1 has applied its share, not only that the
	// leader stored it: cut before that, g1 has nothing to poll.
	eventually.True(t, 20*time.Second, "both members polling", func() bool {
		a, err := owners()
		return err == nil && len(a.Members) == 2 && len(a.Owned("g1")) == 3 && cut.Stats().Devices == 3
	})
	px.Cut(true)
	var takeover uint64 // the revision of the assignment that gave g2 every device
	eventually.True(t, 20*time.Second, "g2 to take every device", func() bool {
		a, err := owners()
		takeover = a.Revision
		return err == nil && len(a.Members) == 1 && len(a.Owned("g2")) == 6
	})
	// g1 keeps polling and spooling meanwhile (two samples per poll):
	// seconds of polls of its old devices pile up in its spool, the
	// oldest well past the duplicate window when they reach the peer.
	eventually.NoError(t, 30*time.Second, "g1 to spool", func() error {
		if st := cut.Stats(); st.Spooled < 60 {
			return fmt.Errorf("spooled %d of 60; devices %d, polls %d, late %d, dropped %d", st.Spooled, st.Devices, st.Polls, st.Late, st.Dropped)
		}
		return nil
	})
	px.Cut(false)
	eventually.True(t, 30*time.Second, "g1 to drain its spool and take its share back", func() bool {
		a, err := owners()
		return err == nil && cut.Stats().Spooled == 0 && len(a.Members) == 2
	})
	if cut.Stats().Superseded == 0 {
		t.Fatal("g1 dropped nothing it observed after its devices moved")
	}
	// A slot's message id is the same whoever polls it: an id stored by
	// two pollers is one slot observed by both and stored twice. When one
	// of the two was observed under an assignment older than the takeover,
	// it is g1's from the cut, which it had to drop: that is the group's
	// failure. Both under the takeover or later is a slot polled on either
	// side of a hand-over, whose copies reached the peer further apart than
	// the short window here (a loaded machine, g1 draining its spool); so
	// is one poller's batch in flight when the cut came, re-sent after it:
	// the window's limit, see docs/operations.md, not the group's.
	for _, d := range devices {
		seen := map[string]storedSample{}
		for _, m := range e.metrics("mx.lab." + d + ".system") {
			first, ok := seen[m.ID]
			p := first.Poller
			switch {
			case ok && p != m.Poller && (first.Assignment < takeover || m.Assignment < takeover):
				if os.Getenv("MESHMON_TEST_DEBUG") != "" {
					for _, m := range e.metrics("mx.lab." + d + ".system") {
						t.Logf("%s %s rev %d id %s", m.Time.Format("15:04:05.000"), m.Poller, m.Assignment, m.ID[:8])
					}
					a, _ := owners()
					t.Logf("since %s", a.Since[d].Format("15:04:05.000"))
				}
				t.Fatalf("%s: the slot of sample %s (%s) stored by %s (assignment %d) and by %s (assignment %d); g2 took every device at %d",
					d, m.ID, m.Time.Format("15:04:05.000"), p, first.Assignment, m.Poller, m.Assignment, takeover)
			case ok && p != m.Poller:
				t.Logf("%s: the slot of sample %s polled by %s and by %s on either side of a hand-over, stored apart by more than the duplicate window", d, m.ID, p, m.Poller)
			case ok:
				t.Logf("%s: sample %s of %s stored twice: re-sent after a cut longer than the duplicate window", d, m.ID, p)
			}
			seen[m.ID] = m
		}
	}
}

// TestPollerGroupHandsOverStates: a device whose interface is down moves to
// another member when its poller crashes; the new owner starts from the
// states the site's events announced, so it does not announce the
// interface down again, and announces its return from down.
func TestPollerGroupHandsOverStates(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 4, "127.63.0.1")
	crash := map[string]func(){"g1": e.runMember("g1"), "g2": e.runMember("g2")}
	ctx := context.Background()
	var a meshmon.Assignment
	eventually.True(t, 20*time.Second, "both members polling", func() bool {
		kv, err := e.js.KeyValue(ctx, bus.GroupBucket)
		if err != nil {
			return false
		}
		a, err = bus.ReadAssignment(ctx, kv, "lab")
		return err == nil && len(a.Members) == 2
	})
	var dev string
	var agent interface{ SetIfOper(int, bool) error }
	for _, ag := range e.sim.Agents() {
		if a.Owners[ag.Name()] == "g1" {
			dev, agent = ag.Name(), ag
			break
		}
	}
	if err := agent.SetIfOper(1, false); err != nil {
		t.Fatal(err)
	}
	e.waitKinds(dev, meshmon.KindIfDown)
	crash["g1"]()
	eventually.True(t, 20*time.Second, "g2 to poll "+dev+" a few times", func() bool {
		n := 0
		for _, s := range e.metrics("mx.lab." + dev + ".if") {
			if s.Poller == "g2" {
				n++
			}
		}
		return n >= 4
	})
	if err := agent.SetIfOper(1, true); err != nil {
		t.Fatal(err)
	}
	evs := e.waitKinds(dev, meshmon.KindIfDown, meshmon.KindIfUp)
	if up := evs[len(evs)-1]; up.Data.Poller != "g2" || up.Data.Previous != "down" {
		t.Fatalf("if_up by %s from %q, want by g2 from down", up.Data.Poller, up.Data.Previous)
	}
}
