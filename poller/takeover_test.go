package poller

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/meshmon/meshmon"
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
	p.upsert(device("moved"), false, false, true)
	p.upsert(device("new"), false, false, false)
	every := cfg.TopologyInterval
	if at := p.devices["new"].lldpAt; !at.IsZero() {
		t.Errorf("a new device's neighbours were read at %s; want them due at its first poll", at)
	}
	due := p.devices["moved"].lldpAt.Add(every)
	if want := now.Add(2 * offset("moved", every)); !due.Equal(want) || !due.After(now) || due.After(now.Add(every)) {
		t.Errorf("a moved device's neighbours due at %s; want %s, within the interval (%s) from now", due, want, every)
	}
}
