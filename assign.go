package meshmon

import (
	"cmp"
	"maps"
	"slices"
	"time"
)

// Weight is how much polling a device costs, for balancing a poller group:
// one per check, and one more for SNMP's interface table.
func (d *Device) Weight() int {
	w := 0
	for _, c := range d.Checks {
		w++
		if c == CheckSNMP {
			w++
		}
	}
	return max(w, 1)
}

// Assign gives every device (name to weight) to one of members, balanced by
// weight and sticky: a device stays with its owner in prev while that owner
// is a member, unless its owner carries more than its share; devices of
// members that left, and new devices, go to the least loaded member. So a
// member leaving moves only its own devices, and one joining takes only
// about its share from the others. With no members it returns an empty
// assignment. The result depends only on its arguments.
func Assign(devices map[string]int, members []string, prev map[string]string) map[string]string {
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
	// the sum of squared loads falls with every move, so this ends. Each
	// move takes, of the weights that narrow the gap, the one that leaves
	// the pair closest to even, and of those the device first in the
	// member's order (its devices by name, then those moved to it, as
	// they came). A member's devices are kept by weight, in that order, so
	// a move costs the few weights, not the member's devices: scanning
	// them made a join at 30,000 devices take 1.7 s of the leader's loop,
	// past its lease (issue 23).
	owned := make(map[string]map[int][]queued, len(members))
	for _, m := range members {
		owned[m] = map[int][]queued{}
	}
	for i, d := range names {
		byWeight := owned[out[d]]
		byWeight[devices[d]] = append(byWeight[devices[d]], queued{name: d, seq: i})
	}
	seq := len(names)
	for range len(devices) + 1 {
		hi, lo := most(), least()
		gap := load[hi] - load[lo]
		best, bestFit := -1, 0
		for w, q := range owned[hi] {
			if len(q) == 0 || w >= gap {
				continue
			}
			fit := abs(gap - 2*w)
			if best < 0 || fit < bestFit || fit == bestFit && q[0].seq < owned[hi][best][0].seq {
				best, bestFit = w, fit
			}
		}
		if best < 0 {
			break
		}
		d := owned[hi][best][0].name
		owned[hi][best] = owned[hi][best][1:]
		owned[lo][best] = append(owned[lo][best], queued{name: d, seq: seq})
		seq++
		out[d] = lo
		load[hi] -= best
		load[lo] += best
	}
	return out
}

// queued is a device in a member's order, for Assign: seq is its place.
type queued struct {
	name string
	seq  int
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// NextAssignment is the assignment a group's leader publishes at now, from
// the previous one (prev; the zero Assignment when there is none), the
// live members (sorted) and the devices (name to weight): Assign's owners,
// each device's Since kept while its owner stays and set to now when it
// moves, and Prev the owner before a move (kept while the owner stays).
// changed is false when the result would give every device to the same
// member as prev, with the same members and leader: the leader then
// publishes nothing. The result depends only on its arguments; its
// Revision is zero (the bucket gives it one).
func NextAssignment(prev Assignment, leader string, live []string, devices map[string]int, now time.Time) (next Assignment, changed bool) {
	owners := Assign(devices, live, prev.Owners)
	if prev.Revision != 0 && maps.Equal(owners, prev.Owners) && slices.Equal(live, prev.Members) && prev.Leader == leader {
		return prev, false
	}
	now = now.UTC()
	since := make(map[string]time.Time, len(owners))
	spells := make(map[string]Spell)
	for d, p := range owners {
		cur, had := prev.Owners[d]
		switch {
		case had && cur == p:
			since[d] = prev.Since[d]
			if sp, ok := prev.Prev[d]; ok {
				spells[d] = sp
			}
		default:
			since[d] = now
			if had {
				spells[d] = Spell{Poller: cur, Since: prev.Since[d]}
			}
		}
	}
	return Assignment{Leader: leader, Members: slices.Clone(live), Owners: owners, Since: since, Prev: spells, Time: now}, true
}

// Moved counts the devices that next gives to another member than prev
// did (new devices and devices that left are not moves).
func Moved(prev, next Assignment) int {
	n := 0
	for d, p := range next.Owners {
		if o, ok := prev.Owners[d]; ok && o != p {
			n++
		}
	}
	return n
}
