package poller

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/sim"
	"github.com/meshmon/meshmon/storage"
)

// TestMovedInReadsNeighborsLater: a device the group moved to this poller
// from another member reads its neighbours at its own offset in the
// topology interval, not at its first poll (a failover polls a third of a
// site at once); a device new to the group reads them at its first poll.
func TestMovedInReadsNeighborsLater(t *testing.T) {
	now := time.Date(2026, 12, 3, 19, 0, 0, 0, time.UTC)
	cfg := DefaultConfig()
	cfg.Name, cfg.Site = "p2", "lab"
	cfg.Now = func() time.Time { return now }
	p, err := New(cfg, nil, nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.gs.latest = meshmon.Assignment{Prev: map[string]meshmon.Spell{"moved": {Poller: "p1"}, "back": {Poller: "p2"}}}
	if got := slices.Sorted(maps.Keys(p.movedIn([]string{"moved", "back", "new"}))); !slices.Equal(got, []string{"moved"}) {
		t.Fatalf("moved in: %v, want [moved]", got)
	}
	device := func(name string) meshmon.Device {
		return meshmon.Device{Name: name, Address: "127.0.0.1", Checks: []string{meshmon.CheckICMP}, Interval: meshmon.Duration(time.Minute)}
	}
	p.upsert(new(device("moved")), false, false, true)
	p.upsert(new(device("new")), false, false, false)
	every := cfg.TopologyInterval
	if at := p.devices["new"].lldpAt; !at.IsZero() {
		t.Errorf("a new device's neighbours were read at %s; want them due at its first poll", at)
	}
	due := p.devices["moved"].lldpAt.Add(every)
	if want := now.Add(offset("moved", every)); !due.Equal(want) || !due.After(now) || due.After(now.Add(every)) {
		t.Errorf("a moved device's neighbours due at %s; want %s, within the interval (%s) from now", due, want, every)
	}
}

// TestMovedInIsCheckedFirst: a device the group moved to this poller is
// first checked with the system group alone (a failover checks a third of
// a site at once), and its next poll reads the interfaces as well; a
// device new to the group, or one an operator polls now, is polled in
// full at once.
func TestMovedInIsCheckedFirst(t *testing.T) {
	s := startSim(t, 2, "c", "127.92.0.1")
	store := testSpool(t)
	cfg := DefaultConfig()
	cfg.Name, cfg.Tenant, cfg.Site = "p2", "acme", "lab"
	p, err := New(cfg, nil, store, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	device := func(a *sim.Agent) meshmon.Device {
		return meshmon.Device{Name: a.Name(), Address: a.Addr().Addr().String(), Checks: []string{meshmon.CheckSNMP},
			Interval: meshmon.Duration(time.Minute), Timeout: meshmon.Duration(time.Second),
			SNMP: &meshmon.SNMP{Version: meshmon.SNMPv2c, Port: int(a.Addr().Port()), Community: "public"}}
	}
	// checks are the samples' checks, sorted; the system sample counts
	// the interfaces only when they were read.
	checks := func(samples []meshmon.Sample) []string {
		var out []string
		counted := false
		for _, s := range samples {
			out = append(out, s.Check)
			if _, ok := s.Values["interfaces"]; ok && s.Check == "system" {
				counted = true
			}
		}
		if counted != slices.Contains(out, "if") {
			t.Errorf("samples %v: the system sample counts interfaces: %v", out, counted)
		}
		slices.Sort(out)
		return out
	}
	ctx := context.Background()
	moved, fresh := device(s.Agents()[0]), device(s.Agents()[1])
	p.upsert(new(moved), false, false, true)
	p.upsert(new(fresh), false, false, false)
	for i, want := range [][]string{{"system"}, {"if", "system"}} {
		if got := checks(p.poll(ctx, p.devices[moved.Name], time.Now())); !slices.Equal(got, want) {
			t.Errorf("moved in, poll %d: samples %v, want %v", i+1, got, want)
		}
	}
	if got := checks(p.poll(ctx, p.devices[fresh.Name], time.Now())); !slices.Equal(got, []string{"if", "lldp", "system"}) {
		t.Errorf("new to the group, first poll: samples %v, want [if lldp system]", got)
	}
	// Moved in again: an operator's poll-now reads it all.
	p.remove(moved.Name)
	p.upsert(new(moved), false, false, true)
	var reply meshmon.TaskReply
	if err := p.pollNow(ctx, meshmon.TaskRequest{Device: moved.Name}, func(r meshmon.TaskReply) error { reply = r; return nil }); err != nil {
		t.Fatal(err)
	}
	if got := checks(reply.Samples); !slices.Equal(got, []string{"if", "system"}) {
		t.Errorf("poll-now of a device just moved in: samples %v, want [if system]", got)
	}
}

// TestNeighborReadingsWaitForASlot: a poll reads the neighbours that are
// due only when one of the poller's slots for them is free (a quarter of
// its workers); without one it polls without them, and the next poll with
// a slot reads them.
func TestNeighborReadingsWaitForASlot(t *testing.T) {
	s := startSim(t, 1, "n", "127.92.1.1")
	cfg := DefaultConfig()
	cfg.Name, cfg.Tenant, cfg.Site, cfg.Workers = "p1", "acme", "lab", 4
	p, err := New(cfg, nil, testSpool(t), nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := cap(p.neighborSlots); n != 1 {
		t.Fatalf("%d slots for neighbour readings with 4 workers; want 1", n)
	}
	a := s.Agents()[0]
	d := meshmon.Device{Name: a.Name(), Address: a.Addr().Addr().String(), Checks: []string{meshmon.CheckSNMP},
		Interval: meshmon.Duration(time.Minute), Timeout: meshmon.Duration(time.Second),
		SNMP: &meshmon.SNMP{Version: meshmon.SNMPv2c, Port: int(a.Addr().Port()), Community: "public"}}
	p.upsert(&d, false, false, false)
	checks := func() []string {
		var out []string
		for _, s := range p.poll(context.Background(), p.devices[d.Name], time.Now()) {
			out = append(out, s.Check)
		}
		slices.Sort(out)
		return out
	}
	p.neighborSlots <- struct{}{} // another poll's reading
	if got := checks(); !slices.Equal(got, []string{"if", "system"}) {
		t.Errorf("first poll, no slot free: samples %v, want [if system]", got)
	}
	<-p.neighborSlots
	if got := checks(); !slices.Equal(got, []string{"if", "lldp", "system"}) {
		t.Errorf("second poll, a slot free: samples %v, want [if lldp system]", got)
	}
	if n := len(p.neighborSlots); n != 0 {
		t.Errorf("%d slots still taken after the poll", n)
	}
	if got := checks(); !slices.Equal(got, []string{"if", "system"}) {
		t.Errorf("third poll, read within the interval: samples %v, want [if system]", got)
	}
}

// TestTakeOverCachesTheDevices: the devices an assignment moves to this
// poller are due at once, checked first, and cached (for a start without
// the peer; reconcile writes the cache once they are due); the devices it
// moves away leave the cache and the schedule.
func TestTakeOverCachesTheDevices(t *testing.T) {
	p, store := groupMember(t, nil)
	seen := map[string]bool{}
	for _, name := range []string{"d1", "d2", "d3"} {
		d := meshmon.Device{Name: name, Address: "127.0.0.1", Checks: []string{meshmon.CheckICMP}, Interval: meshmon.Duration(time.Minute)}
		p.groupChange(meshmon.InventoryChange{Name: name, Device: d}, seen)
		seen[name] = true
	}
	p.groupChange(meshmon.InventoryChange{Synced: true}, seen)
	cachedNames := func() []string {
		t.Helper()
		ds, err := store.Devices()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, d := range ds {
			names = append(names, d.Name)
		}
		slices.Sort(names)
		return names
	}
	ctx := context.Background()
	p.assign(ctx, meshmon.Assignment{Revision: 1, Owners: map[string]string{"d1": "p1", "d2": "p2", "d3": "p2"}})
	if got := cachedNames(); !slices.Equal(got, []string{"d1"}) {
		t.Fatalf("cached after the first assignment: %v, want [d1]", got)
	}
	p.assign(ctx, meshmon.Assignment{Revision: 2, Owners: map[string]string{"d1": "p2", "d2": "p1", "d3": "p1"},
		Prev: map[string]meshmon.Spell{"d1": {Poller: "p1"}, "d2": {Poller: "p2"}, "d3": {Poller: "p2"}}})
	if got := cachedNames(); !slices.Equal(got, []string{"d2", "d3"}) {
		t.Fatalf("cached after the take-over: %v, want [d2 d3]", got)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, name := range []string{"d2", "d3"} {
		if tg := p.devices[name]; tg == nil || !tg.check {
			t.Errorf("%s taken over: target %+v, want it scheduled with a check first", name, tg)
		}
	}
	if _, ok := p.devices["d1"]; ok {
		t.Error("d1 moved away is still polled")
	}
	if e, ok := p.sched.next(); !ok || e.at.After(time.Now()) {
		t.Errorf("first entry due %v (%v); want the taken-over devices due now", e.at, ok)
	}
}

// TestTakeOverChecksTheUnpolledFirst takes over devices half way through
// their slot: those whose offset has not come yet (the member that left
// had not polled them in this slot) are checked first, those it would
// have polled already after them, so that the checks' samples that
// duplicate its samples come last in the spool (polledInSlot).
func TestTakeOverChecksTheUnpolledFirst(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 30, 0, time.UTC) // half way through the minute
	p, _ := groupMember(t, func() time.Time { return now })
	seen := map[string]bool{}
	owners, moved, prev := map[string]string{}, map[string]string{}, map[string]meshmon.Spell{}
	polled := map[string]bool{}
	for i := range 40 {
		name := fmt.Sprintf("d%d", i)
		d := meshmon.Device{Name: name, Address: "127.0.0.1", Checks: []string{meshmon.CheckICMP}, Interval: meshmon.Duration(time.Minute)}
		p.groupChange(meshmon.InventoryChange{Name: name, Device: d}, seen)
		seen[name] = true
		owners[name], moved[name], prev[name] = "p2", "p1", meshmon.Spell{Poller: "p2"}
		polled[name] = offset(name, time.Minute) < 30*time.Second
	}
	p.groupChange(meshmon.InventoryChange{Synced: true}, seen)
	ctx := context.Background()
	p.assign(ctx, meshmon.Assignment{Revision: 1, Owners: owners})
	p.assign(ctx, meshmon.Assignment{Revision: 2, Owners: moved, Prev: prev})
	var order []string
	for range len(owners) {
		e := p.sched.pop()
		order = append(order, e.name)
	}
	first := slices.IndexFunc(order, func(n string) bool { return polled[n] })
	if first <= 0 || first == len(order) {
		t.Fatalf("want devices of both kinds; order %v, polled in the slot %v", order, polled)
	}
	for _, n := range order[first:] {
		if !polled[n] {
			t.Errorf("%s, not polled in the slot yet, is checked after %s, which was: order %v", n, order[first], order)
		}
	}
}

// testSpool opens a spool in the test's temporary directory, closed when
// the test ends.
func testSpool(t *testing.T) *storage.DB {
	t.Helper()
	store, err := storage.Open(filepath.Join(t.TempDir(), "spool.db"), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

// groupMember returns poller p1 of site lab in a group (stubGroup), on a
// spool of its own, with the clock now (nil: the real one), not running.
func groupMember(t *testing.T, now func() time.Time) (*Poller, *storage.DB) {
	t.Helper()
	store := testSpool(t)
	cfg := DefaultConfig()
	cfg.Name, cfg.Tenant, cfg.Site = "p1", "acme", "lab"
	if now != nil {
		cfg.Now = now
	}
	p, err := New(cfg, nil, store, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.JoinGroup(stubGroup{})
	return p, store
}
