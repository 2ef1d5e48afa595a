package console

import (
	"fmt"
	"strings"
	"testing"

	"github.com/meshmon/meshmon"
)

func TestTopologySVG(t *testing.T) {
	links := []meshmon.Link{
		{A: meshmon.LinkEnd{Device: "r1", Known: true, Port: "eth1"}, B: meshmon.LinkEnd{Device: "r2", Known: true, Port: "eth0"}, Protocols: []string{"lldp"}, Both: true},
		{A: meshmon.LinkEnd{Device: "r1", Known: true, Port: "eth0"}, B: meshmon.LinkEnd{Device: `<script>gw</script>`, Port: "xe-0/0/0"}, Protocols: []string{"cdp", "lldp"}},
		{A: meshmon.LinkEnd{Device: "r2", Known: true, Port: "eth2"}, B: meshmon.LinkEnd{Device: "r3", Known: true, Port: "eth0"}, Protocols: []string{"lldp"}, Both: true},
	}
	svg := string(topologySVG("s1", links, 720, 420))
	for what, want := range map[string]int{
		`<line class="link`:               3,
		`<line class="link one-end"`:      1,
		`<a class="node" data-device="r`:  3,
		`<g class="node unknown"`:         1,
		`href="/sites/s1/devices/r2"`:     1,
		`>eth1</text>`:                    1,
		`>xe-0/0/0</text>`:                1,
		`&lt;script&gt;gw&lt;/script&gt;`: 5, // the link's data-b and title, the node's data-device, name and title
	} {
		if got := strings.Count(svg, what); got != want {
			t.Errorf("%d of %q, want %d", got, what, want)
		}
	}
	if strings.Contains(svg, "<script>") {
		t.Fatalf("a neighbour's name not escaped:\n%s", svg)
	}
	if !strings.Contains(svg, "r1 eth0 -- &lt;script&gt;gw&lt;/script&gt; xe-0/0/0 (cdp+lldp)") {
		t.Errorf("the link's title:\n%s", svg)
	}

	// A site too large to draw says so.
	var many []meshmon.Link
	for i := range maxTopologyNodes {
		many = append(many, meshmon.Link{A: meshmon.LinkEnd{Device: fmt.Sprintf("d%d", i), Known: true}, B: meshmon.LinkEnd{Device: fmt.Sprintf("d%d", i+1), Known: true}})
	}
	if big := string(topologySVG("s1", many, 720, 420)); !strings.Contains(big, "too many to draw") || strings.Contains(big, "<line") {
		t.Errorf("%d devices drawn:\n%.300s", maxTopologyNodes+1, big)
	}
}
