package meshmon

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
)

// What `meshmon topology parents` does with a device's parent
// (ParentChange.Action).
const (
	ParentSet         = "set"         // it has none: the topology's is set
	ParentReplace     = "replace"     // it has another and --replace: the topology's replaces it
	ParentKeep        = "keep"        // it has another (set by hand): kept without --replace
	ParentSame        = "same"        // it has the topology's already
	ParentRoot        = "root"        // a root: it gets no parent (one it has is kept)
	ParentUnreachable = "unreachable" // no link reaches it from a root: left alone
	ParentLoop        = "loop"        // the topology's would make a loop with a parent kept: left alone
)

// ParentChange is what the topology says of one device's parent.
type ParentChange struct {
	Device   string `json:"device"`
	Now      string `json:"parent_now,omitempty"`    // its parent in the inventory
	Topology string `json:"from_topology,omitempty"` // its parent in the links
	Hops     int    `json:"hops,omitempty"`          // links from the nearest root
	Action   string `json:"action"`                  // ParentSet, ParentKeep, ...
	Applied  bool   `json:"applied,omitempty"`       // written to the inventory
	Error    string `json:"error,omitempty"`         // why writing it failed
}

// Writes reports whether the change sets the device's parent.
func (c ParentChange) Writes() bool { return c.Action == ParentSet || c.Action == ParentReplace }

// PlanParents says, for every device of a site's inventory (devs), which
// parent the site's links give it, seen from roots, and what to do with
// it. A device's parent is its neighbour one hop nearer the nearest root,
// on a shortest path (of several, the first by name), so the parents form
// a tree over what the links reach: each device is reached through its
// parent. Only links between two inventory devices count: an unknown
// neighbour is no hop, so two devices behind the same unmanaged switch
// are not each other's parent.
//
// A device that has no parent gets the topology's (ParentSet); one with
// another keeps it (ParentKeep) unless replace (ParentReplace); roots get
// none, and devices the links do not reach are left alone. A new parent
// that would make a loop with the parents kept (a device behind its own
// child: the loop's alarms would all be symptoms, and none would page) is
// left out (ParentLoop). The changes are sorted by device.
//
// It fails (ErrInvalidRoot) when a root is not a device of devs, or has no
// link to one.
func PlanParents(devs []Device, links []Link, roots []string, replace bool) ([]ParentChange, error) {
	now := make(map[string]string, len(devs))
	for _, d := range devs {
		now[d.Name] = d.Parent
	}
	adj := map[string][]string{}
	for _, l := range links {
		a, b := l.A.Device, l.B.Device
		if _, ok := now[a]; !ok || !l.A.Known {
			continue
		}
		if _, ok := now[b]; !ok || !l.B.Known || a == b {
			continue
		}
		adj[a] = append(adj[a], b)
		adj[b] = append(adj[b], a)
	}
	for d, ns := range adj {
		slices.Sort(ns)
		adj[d] = slices.Compact(ns)
	}
	roots = slices.Compact(slices.Sorted(slices.Values(roots)))
	hops := map[string]int{}
	for _, r := range roots {
		if _, ok := now[r]; !ok {
			return nil, fmt.Errorf("%w %s: not a device of the site's inventory", ErrInvalidRoot, r)
		}
		if len(adj[r]) == 0 {
			return nil, fmt.Errorf("%w %s: no link to another device of the site (its neighbours' lldp samples name none)", ErrInvalidRoot, r)
		}
		hops[r] = 0
	}
	// Breadth first from every root at once: hops is the distance to the
	// nearest.
	for queue := slices.Clone(roots); len(queue) > 0; queue = queue[1:] {
		for _, n := range adj[queue[0]] {
			if _, ok := hops[n]; !ok {
				hops[n] = hops[queue[0]] + 1
				queue = append(queue, n)
			}
		}
	}
	out := make([]ParentChange, 0, len(devs))
	for _, d := range devs {
		c := ParentChange{Device: d.Name, Now: d.Parent}
		h, reached := hops[d.Name]
		switch {
		case slices.Contains(roots, d.Name):
			c.Action = ParentRoot
		case !reached:
			c.Action = ParentUnreachable
		default:
			c.Hops = h
			// adj is sorted: the first neighbour a hop nearer (a
			// neighbour of a device reached is reached).
			i := slices.IndexFunc(adj[d.Name], func(n string) bool { return hops[n] == h-1 })
			c.Topology = adj[d.Name][i]
			switch {
			case d.Parent == c.Topology:
				c.Action = ParentSame
			case d.Parent == "":
				c.Action = ParentSet
			case replace:
				c.Action = ParentReplace
			default:
				c.Action = ParentKeep
			}
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b ParentChange) int { return cmp.Compare(a.Device, b.Device) })
	// The new parents among themselves form a tree; with the parents kept
	// they may not.
	for i, c := range out {
		if !c.Writes() {
			continue
		}
		was := now[c.Device]
		now[c.Device] = c.Topology
		if loops(now, c.Device) {
			now[c.Device] = was
			out[i].Action = ParentLoop
		}
	}
	return out, nil
}

// loops reports whether following parents from dev comes back to it.
func loops(parent map[string]string, dev string) bool {
	seen := map[string]bool{}
	for p := parent[dev]; p != "" && !seen[p]; p = parent[p] {
		if p == dev {
			return true
		}
		seen[p] = true
	}
	return false
}

// WriteParentChanges prints changes as `meshmon topology parents` does: a
// table of each device's parent now, from the topology, and what is done.
func WriteParentChanges(w io.Writer, changes []ParentChange) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tPARENT NOW\tFROM TOPOLOGY\tACTION")
	dash := func(s string) string { return cmp.Or(s, "-") }
	for _, c := range changes {
		action := c.Action
		switch {
		case c.Applied:
			action += " (done)"
		case c.Error != "":
			action += " (failed: " + c.Error + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Device, dash(c.Now), dash(c.Topology), action)
	}
	return tw.Flush()
}
