package meshmon

import (
	"cmp"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func loads(devices map[string]int, a map[string]string) map[string]int {
	l := map[string]int{}
	for d, m := range a {
		l[m] += devices[d]
	}
	return l
}

func checkAssignment(t *testing.T, devices map[string]int, members []string, a map[string]string) {
	t.Helper()
	if len(a) != len(devices) {
		t.Fatalf("%d of %d devices assigned", len(a), len(devices))
	}
	live := map[string]bool{}
	for _, m := range members {
		live[m] = true
	}
	maxW := 0
	for d, w := range devices {
		if !live[a[d]] {
			t.Fatalf("device %s given to %q, not a member", d, a[d])
		}
		maxW = max(maxW, w)
	}
	l := loads(devices, a)
	lo, hi := -1, 0
	for _, m := range members {
		hi = max(hi, l[m])
		if lo < 0 || l[m] < lo {
			lo = l[m]
		}
	}
	if hi-lo > maxW {
		t.Fatalf("loads %v: gap %d is more than the heaviest device (%d)", l, hi-lo, maxW)
	}
}

func moved(a, b map[string]string) int {
	n := 0
	for d, m := range b {
		if a[d] != "" && a[d] != m {
			n++
		}
	}
	return n
}

func TestAssignBalancedAndSticky(t *testing.T) {
	devices := map[string]int{}
	for i := range 300 {
		devices[fmt.Sprintf("d%03d", i)] = 1 + i%4 // weights 1 to 4
	}
	members := []string{"p1", "p2", "p3"}
	a := Assign(devices, members, nil)
	checkAssignment(t, devices, members, a)
	if b := Assign(devices, []string{"p3", "p1", "p2"}, nil); !maps.Equal(a, b) {
		t.Fatal("the same input in another order gave another assignment")
	}
	if b := Assign(devices, members, a); moved(a, b) != 0 {
		t.Fatalf("assigning again moved %d devices", moved(a, b))
	}

	// p2 leaves: only its devices move.
	b := Assign(devices, []string{"p1", "p3"}, a)
	checkAssignment(t, devices, []string{"p1", "p3"}, b)
	for d, m := range a {
		if m != "p2" && b[d] != m {
			t.Fatalf("device %s moved from %s to %s though %s stayed", d, m, b[d], m)
		}
	}

	// p4 joins: it takes about its share, nothing else moves.
	c := Assign(devices, []string{"p1", "p3", "p4"}, b)
	checkAssignment(t, devices, []string{"p1", "p3", "p4"}, c)
	for d, m := range b {
		if c[d] != m && c[d] != "p4" {
			t.Fatalf("device %s moved from %s to %s, not to the new member", d, m, c[d])
		}
	}
	share := len(devices) / 3
	if n := moved(b, c); n < share/2 || n > share*3/2 {
		t.Fatalf("a join moved %d devices; its share is about %d", n, share)
	}

	// A new device goes to the least loaded member.
	devices["new"] = 1
	d := Assign(devices, []string{"p1", "p3", "p4"}, c)
	checkAssignment(t, devices, []string{"p1", "p3", "p4"}, d)
	if moved(c, d) > 1 {
		t.Fatalf("adding one device moved %d others", moved(c, d))
	}
}

func TestAssignEdges(t *testing.T) {
	if a := Assign(map[string]int{"d1": 1}, nil, nil); len(a) != 0 {
		t.Fatalf("no members: %v", a)
	}
	if a := Assign(nil, []string{"p1"}, map[string]string{"gone": "p1"}); len(a) != 0 {
		t.Fatalf("no devices: %v", a)
	}
	a := Assign(map[string]int{"big": 10, "s1": 1, "s2": 1}, []string{"p1", "p2"}, nil)
	if a["s1"] == a["big"] || a["s2"] == a["big"] {
		t.Fatalf("the heavy device shares its member: %v", a)
	}
	dev := Device{Checks: []string{CheckICMP, CheckSNMP}}
	if w := dev.Weight(); w != 3 {
		t.Fatalf("icmp+snmp weighs %d, want 3", w)
	}
}

func TestNextAssignment(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 6, 0, 0, 0, time.UTC)
	t1 := t0.Add(90 * time.Second) // the injected clock of each step
	devs := func(names ...string) map[string]int {
		m := map[string]int{}
		for _, n := range names {
			m[n] = 1
		}
		return m
	}
	// p1 owns a and b, p2 c and d, since t0; c came from p3 before.
	prev := Assignment{Revision: 7, Leader: "p1", Members: []string{"p1", "p2"},
		Owners: map[string]string{"a": "p1", "b": "p1", "c": "p2", "d": "p2"},
		Since:  map[string]time.Time{"a": t0, "b": t0, "c": t0, "d": t0},
		Prev:   map[string]Spell{"c": {Poller: "p3", Since: t0.Add(-time.Hour)}},
		Time:   t0}
	for _, tc := range []struct {
		name    string
		prev    Assignment
		leader  string
		live    []string
		devices map[string]int
		changed bool
		owners  map[string]string
		since   map[string]time.Time
		spells  map[string]Spell
	}{
		{name: "first", prev: Assignment{}, leader: "p1", live: []string{"p1", "p2"}, devices: devs("a", "b", "c", "d"), changed: true,
			owners: map[string]string{"a": "p1", "b": "p2", "c": "p1", "d": "p2"},
			since:  map[string]time.Time{"a": t1, "b": t1, "c": t1, "d": t1}, spells: map[string]Spell{}},
		{name: "nothing changed", prev: prev, leader: "p1", live: []string{"p1", "p2"}, devices: devs("a", "b", "c", "d"), changed: false,
			owners: prev.Owners, since: prev.Since, spells: prev.Prev},
		{name: "new leader, same owners", prev: prev, leader: "p2", live: []string{"p1", "p2"}, devices: devs("a", "b", "c", "d"), changed: true,
			owners: prev.Owners, since: prev.Since, spells: prev.Prev},
		{name: "member leaves: only its devices move", prev: prev, leader: "p1", live: []string{"p1"}, devices: devs("a", "b", "c", "d"), changed: true,
			owners: map[string]string{"a": "p1", "b": "p1", "c": "p1", "d": "p1"},
			since:  map[string]time.Time{"a": t0, "b": t0, "c": t1, "d": t1},
			spells: map[string]Spell{"c": {Poller: "p2", Since: t0}, "d": {Poller: "p2", Since: t0}}},
		{name: "member joins: takes its share", prev: prev, leader: "p1", live: []string{"p1", "p2", "p3", "p4"}, devices: devs("a", "b", "c", "d"), changed: true,
			owners: map[string]string{"a": "p3", "b": "p1", "c": "p4", "d": "p2"},
			since:  map[string]time.Time{"a": t1, "b": t0, "c": t1, "d": t0},
			spells: map[string]Spell{"a": {Poller: "p1", Since: t0}, "c": {Poller: "p2", Since: t0}}},
		{name: "device added, device removed", prev: prev, leader: "p1", live: []string{"p1", "p2"}, devices: devs("a", "b", "c", "e"), changed: true,
			owners: map[string]string{"a": "p1", "b": "p1", "c": "p2", "e": "p2"},
			since:  map[string]time.Time{"a": t0, "b": t0, "c": t0, "e": t1},
			spells: map[string]Spell{"c": {Poller: "p3", Since: t0.Add(-time.Hour)}}},
		{name: "no members", prev: prev, leader: "p1", live: nil, devices: devs("a"), changed: true,
			owners: map[string]string{}, since: map[string]time.Time{}, spells: map[string]Spell{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next, changed := NextAssignment(tc.prev, tc.leader, tc.live, tc.devices, t1)
			if changed != tc.changed {
				t.Fatalf("changed %v, want %v", changed, tc.changed)
			}
			if !maps.Equal(next.Owners, tc.owners) {
				t.Errorf("owners %v, want %v", next.Owners, tc.owners)
			}
			if !maps.EqualFunc(next.Since, tc.since, time.Time.Equal) {
				t.Errorf("since %v, want %v", next.Since, tc.since)
			}
			if !maps.EqualFunc(next.Prev, tc.spells, func(a, b Spell) bool { return a.Poller == b.Poller && a.Since.Equal(b.Since) }) {
				t.Errorf("prev %v, want %v", next.Prev, tc.spells)
			}
			if !changed {
				return
			}
			if next.Leader != tc.leader || !slices.Equal(next.Members, tc.live) || !next.Time.Equal(t1) || next.Revision != 0 {
				t.Errorf("leader %s members %v time %s revision %d", next.Leader, next.Members, next.Time, next.Revision)
			}
			moves := 0
			for d, p := range tc.owners {
				if o, ok := tc.prev.Owners[d]; ok && o != p {
					moves++
				}
			}
			if got := Moved(tc.prev, next); got != moves {
				t.Errorf("Moved %d, want %d", got, moves)
			}
		})
	}
}

// TestAssignAsByScan: Assign gives every device to the same member as the
// release before it did, whose rebalancing scanned the most loaded
// member's devices at every move (assignByScan, kept here as the
// reference), on joins, leaves and new devices of mixed weights.
func TestAssignAsByScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for run := range 300 {
		devices := map[string]int{}
		for i := range rng.IntN(400) {
			devices[fmt.Sprintf("d%03d", i)] = 1 + rng.IntN(1+run%5)
		}
		var members []string
		for i := range 1 + rng.IntN(5) {
			members = append(members, fmt.Sprintf("p%d", i))
		}
		prev := map[string]string{}
		for d := range devices {
			if rng.IntN(4) > 0 {
				prev[d] = fmt.Sprintf("p%d", rng.IntN(6)) // some left, some never were
			}
		}
		got, want := Assign(devices, members, prev), assignByScan(devices, members, prev)
		if !maps.Equal(got, want) {
			t.Fatalf("run %d (%d devices, members %v): Assign and the scan differ on %d devices", run, len(devices), members, moved(want, got))
		}
	}
}

// BenchmarkAssignJoin: a third member joins a group of 30,000 and of
// 100,000 devices, as the leader computes it (NextAssignment), and at
// 30,000 the rebalancing of the release before (assignByScan).
//
//	go test -run '^$' -bench AssignJoin -benchmem .
func BenchmarkAssignJoin(b *testing.B) {
	for _, n := range []int{30000, 100000} {
		devices := map[string]int{}
		for i := range n {
			devices[fmt.Sprintf("dev%06d", i)] = 1 + i%3
		}
		now := time.Now()
		prev, _ := NextAssignment(Assignment{}, "p2", []string{"p2", "p3"}, devices, now)
		prev.Revision = 10
		b.Run(fmt.Sprintf("devices=%d", n), func(b *testing.B) {
			for b.Loop() {
				NextAssignment(prev, "p2", []string{"p1", "p2", "p3"}, devices, now)
			}
		})
		if n == 30000 {
			b.Run(fmt.Sprintf("devices=%d/scan", n), func(b *testing.B) {
				for b.Loop() {
					assignByScan(devices, []string{"p1", "p2", "p3"}, prev.Owners)
				}
			})
		}
	}
}

// assignByScan is Assign as it was before its moves kept each member's
// devices by weight: the reference of TestAssignAsByScan.
func assignByScan(devices map[string]int, members []string, prev map[string]string) map[string]string {
	out := make(map[string]string, len(devices))
	if len(members) == 0 {
		return out
	}
	load := make(map[string]int, len(members))
	for _, m := range members {
		load[m] = 0
	}
	names := make([]string, 0, len(devices))
	for d := range devices {
		names = append(names, d)
	}
	slices.Sort(names)
	var loose []string
	for _, d := range names {
		if m, ok := prev[d]; ok {
			if _, live := load[m]; live {
				out[d] = m
				load[m] += devices[d]
				continue
			}
		}
		loose = append(loose, d)
	}
	sorted := slices.Clone(members)
	slices.Sort(sorted)
	least := func() string {
		return slices.MinFunc(sorted, func(a, b string) int { return cmp.Or(cmp.Compare(load[a], load[b]), cmp.Compare(a, b)) })
	}
	most := func() string {
		return slices.MaxFunc(sorted, func(a, b string) int { return cmp.Or(cmp.Compare(load[a], load[b]), cmp.Compare(b, a)) })
	}
	// Heaviest first, each to the least loaded member.
	slices.SortStableFunc(loose, func(a, b string) int { return cmp.Compare(devices[b], devices[a]) })
	for _, d := range loose {
		m := least()
		out[d] = m
		load[m] += devices[d]
	}
	// Move devices from the most to the least loaded member while that
	// narrows their gap: a move of weight w narrows a gap g when w < g, and
	// the sum of squared loads falls with every move, so this ends.
	owned := make(map[string][]string, len(members))
	for _, d := range names {
		owned[out[d]] = append(owned[out[d]], d)
	}
	for range len(devices) + 1 {
		hi, lo := most(), least()
		gap := load[hi] - load[lo]
		best, bestFit := -1, 0
		for i, d := range owned[hi] {
			w := devices[d]
			if w >= gap {
				continue
			}
			// The move that leaves the pair closest to even.
			if fit := abs(gap - 2*w); best < 0 || fit < bestFit {
				best, bestFit = i, fit
			}
		}
		if best < 0 {
			break
		}
		d := owned[hi][best]
		owned[hi] = slices.Delete(owned[hi], best, best+1)
		owned[lo] = append(owned[lo], d)
		out[d] = lo
		load[hi] -= devices[d]
		load[lo] += devices[d]
	}
	return out
}
