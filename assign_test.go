package meshmon

import (
	"fmt"
	"maps"
	"testing"
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
