package meshmon_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/meshmon/meshmon"
)

// TestPlanParents: the parents a site's links give its devices, seen from
// roots, and what is done with the parents they have.
func TestPlanParents(t *testing.T) {
	link := func(a, b string) meshmon.Link {
		return meshmon.Link{A: meshmon.LinkEnd{Device: a, Known: true, Port: "eth0"}, B: meshmon.LinkEnd{Device: b, Known: true, Port: "eth1"}, Both: true}
	}
	unknown := func(a, b string) meshmon.Link {
		return meshmon.Link{A: meshmon.LinkEnd{Device: a, Known: true, Port: "eth2"}, B: meshmon.LinkEnd{Device: b, Port: "xe-0/0/0"}}
	}
	// devs are inventory devices, "name" or "name>parent".
	devs := func(specs ...string) []meshmon.Device {
		var out []meshmon.Device
		for _, s := range specs {
			name, parent, _ := strings.Cut(s, ">")
			out = append(out, meshmon.Device{Name: name, Parent: parent})
		}
		return out
	}
	names := func(prefix string, n int) []string {
		var out []string
		for i := 1; i <= n; i++ {
			out = append(out, fmt.Sprintf("%s%d", prefix, i))
		}
		return out
	}
	// tree is the simulator's binary tree: t<i> linked to t<i/2>, t1 to
	// the ISP's gateway (unknown).
	var tree []meshmon.Link
	for i := 2; i <= 7; i++ {
		tree = append(tree, link(fmt.Sprintf("t%d", i/2), fmt.Sprintf("t%d", i)))
	}
	tree = append(tree, unknown("t1", "isp-gw.example.net"))
	ring := func(n int) []meshmon.Link {
		var out []meshmon.Link
		for i := 1; i <= n; i++ {
			out = append(out, link(fmt.Sprintf("r%d", i), fmt.Sprintf("r%d", i%n+1)))
		}
		return out
	}
	line := []meshmon.Link{link("a", "b"), link("b", "c"), link("c", "d"), link("d", "e")}

	// want is "device:parent now:from topology:action" a device, sorted.
	for _, tc := range []struct {
		name    string
		devs    []meshmon.Device
		links   []meshmon.Link
		roots   []string
		replace bool
		want    []string
		err     string
	}{
		{name: "tree", devs: devs(names("t", 7)...), links: tree, roots: []string{"t1"}, want: []string{
			"t1:::root", "t2::t1:set", "t3::t1:set", "t4::t2:set", "t5::t2:set", "t6::t3:set", "t7::t3:set"}},
		{name: "tree from a branch", devs: devs(names("t", 7)...), links: tree, roots: []string{"t2"}, want: []string{
			"t1::t2:set", "t2:::root", "t3::t1:set", "t4::t2:set", "t5::t2:set", "t6::t3:set", "t7::t3:set"}},
		{name: "a ring of 5: each side of the cycle to its nearer end", devs: devs(names("r", 5)...), links: ring(5), roots: []string{"r1"}, want: []string{
			"r1:::root", "r2::r1:set", "r3::r2:set", "r4::r5:set", "r5::r1:set"}},
		{name: "a ring of 4: a tie goes to the first by name", devs: devs(names("r", 4)...), links: ring(4), roots: []string{"r1"}, want: []string{
			"r1:::root", "r2::r1:set", "r3::r2:set", "r4::r1:set"}},
		{name: "two roots: each device to the nearer, a tie by name", devs: devs("a", "b", "c", "d", "e"), links: line, roots: []string{"e", "a"}, want: []string{
			"a:::root", "b::a:set", "c::b:set", "d::e:set", "e:::root"}},
		{name: "a root given twice", devs: devs("a", "b"), links: line[:1], roots: []string{"a", "a"}, want: []string{"a:::root", "b::a:set"}},
		{name: "unreachable: no link, an unknown neighbour only, an island, behind a device not in the inventory",
			devs:  devs("a", "b", "x", "y", "i1", "i2", "z"),
			links: []meshmon.Link{link("a", "b"), unknown("y", "dumb-switch"), unknown("b", "dumb-switch"), link("i1", "i2"), link("b", "ghost"), link("ghost", "z")},
			roots: []string{"a"},
			want:  []string{"a:::root", "b::a:set", "i1:::unreachable", "i2:::unreachable", "x:::unreachable", "y:::unreachable", "z:::unreachable"}},
		{name: "parents set by hand are kept", devs: devs("t1>fw", "fw", "t2>t1", "t3>t2", "t4", "t5>t3", "t6", "t7"), links: tree, roots: []string{"t1"}, want: []string{
			"fw:::unreachable", "t1:fw::root", "t2:t1:t1:same", "t3:t2:t1:keep", "t4::t2:set", "t5:t3:t2:keep", "t6::t3:set", "t7::t3:set"}},
		{name: "replaced with --replace", devs: devs("t1>fw", "fw", "t2>t1", "t3>t2", "t4", "t5>t3", "t6", "t7"), links: tree, roots: []string{"t1"}, replace: true, want: []string{
			"fw:::unreachable", "t1:fw::root", "t2:t1:t1:same", "t3:t2:t1:replace", "t4::t2:set", "t5:t3:t2:replace", "t6::t3:set", "t7::t3:set"}},
		{name: "a parent that would close a loop with one kept is left out", devs: devs("a", "b>c", "c"), links: line[:2], roots: []string{"a"}, want: []string{
			"a:::root", "b:c:a:keep", "c::b:loop"}},
		{name: "with --replace the loop is undone instead", devs: devs("a", "b>c", "c"), links: line[:2], roots: []string{"a"}, replace: true, want: []string{
			"a:::root", "b:c:a:replace", "c::b:set"}},
		{name: "a root behind its own child by hand", devs: devs("a>b", "b"), links: line[:1], roots: []string{"a"}, want: []string{"a:b::root", "b::a:loop"}},
		{name: "a root not in the inventory", devs: devs("a", "b"), links: line[:1], roots: []string{"a", "core9"}, err: "invalid root core9: not a device of the site's inventory"},
		{name: "a root without a link", devs: devs("a", "b", "x"), links: line[:1], roots: []string{"x"}, err: "invalid root x: no link to another device"},
		{name: "a root linked only to unknown neighbours", devs: devs("y"), links: []meshmon.Link{unknown("y", "dumb-switch")}, roots: []string{"y"}, err: "invalid root y: no link"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := meshmon.PlanParents(tc.devs, tc.links, tc.roots, tc.replace)
			if tc.err != "" {
				if !errors.Is(err, meshmon.ErrInvalidRoot) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want ErrInvalidRoot with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var s []string
			for _, c := range got {
				s = append(s, c.Device+":"+c.Now+":"+c.Topology+":"+c.Action)
			}
			if strings.Join(s, " ") != strings.Join(tc.want, " ") {
				t.Errorf("got  %v\nwant %v", s, tc.want)
			}
		})
	}
}
