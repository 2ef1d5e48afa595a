package console

import (
	"cmp"
	"fmt"
	"html"
	"html/template"
	"math"
	"net/url"
	"slices"
	"strings"

	"github.com/meshmon/meshmon"
)

// The site page's topology: the links of the site's devices as their
// latest LLDP and CDP neighbours report them (bus.ReadNeighbors and
// meshmon.Links, as `meshmon topology --site S` prints them), drawn on
// the server as inline SVG: the devices on a circle, the links as lines
// between them.

// maxTopologyNodes bounds the devices drawn; a site with more lists its
// links only.
const maxTopologyNodes = 120

// topoNode is one device of the drawing: a device whose own neighbour
// samples are at central (Known), or a neighbour that matched none: a
// device outside the site, or one of the site's not polled for its
// neighbours yet (the console does not read the site's inventory).
type topoNode struct {
	Name  string
	Known bool
}

// topologyNodes are the links' ends, known devices first, each by name.
func topologyNodes(links []meshmon.Link) []topoNode {
	seen := map[topoNode]bool{}
	var out []topoNode
	for _, l := range links {
		for _, e := range []meshmon.LinkEnd{l.A, l.B} {
			n := topoNode{Name: e.Device, Known: e.Known}
			if !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	slices.SortFunc(out, func(a, b topoNode) int {
		if a.Known != b.Known {
			if a.Known {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.Name, b.Name)
	})
	return out
}

// topologySVG draws links as an SVG of w by h pixels. Each device is a
// circle with its name (a known one links to its page at site, an
// unknown one, topoNode, is hollow), each link a line (dashed when only one end
// reports it) titled with its ports and protocols. The text is escaped;
// the rest is numbers.
func topologySVG(site string, links []meshmon.Link, w, h int) template.HTML {
	nodes := topologyNodes(links)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg id="topology" class="topology" role="img" viewBox="0 0 %d %d" width="%d" height="%d"><title>links of site %s</title>`, w, h, w, h, html.EscapeString(site))
	if len(nodes) > maxTopologyNodes {
		fmt.Fprintf(&b, `<text x="16" y="24" class="chart-empty">%d devices: too many to draw; the links are listed below</text></svg>`, len(nodes))
		return template.HTML(b.String())
	}
	cx, cy := float64(w)/2, float64(h)/2
	r := math.Min(cx, cy) - 60
	at := map[topoNode][2]float64{}
	for i, n := range nodes {
		a := 2*math.Pi*float64(i)/float64(len(nodes)) - math.Pi/2
		if len(nodes) == 1 {
			at[n] = [2]float64{cx, cy}
			continue
		}
		at[n] = [2]float64{cx + r*math.Cos(a), cy + r*math.Sin(a)}
	}
	for _, l := range links {
		p, q := at[topoNode{l.A.Device, l.A.Known}], at[topoNode{l.B.Device, l.B.Known}]
		class := "link"
		if !l.Both {
			class += " one-end"
		}
		title := fmt.Sprintf("%s %s -- %s %s (%s)", l.A.Device, cmp.Or(l.A.Port, "?"), l.B.Device, cmp.Or(l.B.Port, "?"), strings.Join(l.Protocols, "+"))
		fmt.Fprintf(&b, `<line class="%s" data-a="%s" data-b="%s" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"><title>%s</title></line>`,
			class, html.EscapeString(l.A.Device), html.EscapeString(l.B.Device), p[0], p[1], q[0], q[1], html.EscapeString(title))
		// Each port's name near its own end.
		for _, e := range []struct {
			port     string
			from, to [2]float64
		}{{l.A.Port, p, q}, {l.B.Port, q, p}} {
			if e.port == "" {
				continue
			}
			x, y := e.from[0]+(e.to[0]-e.from[0])*0.22, e.from[1]+(e.to[1]-e.from[1])*0.22
			fmt.Fprintf(&b, `<text class="port" x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, x, y-3, html.EscapeString(e.port))
		}
	}
	for _, n := range nodes {
		p := at[n]
		anchor, dx := "start", 10.0
		if p[0] < cx-1 {
			anchor, dx = "end", -10
		}
		label := fmt.Sprintf(`<circle cx="%.1f" cy="%.1f" r="7"/><text x="%.1f" y="%.1f" text-anchor="%s">%s</text>`, p[0], p[1], p[0]+dx, p[1]+4, anchor, html.EscapeString(n.Name))
		if n.Known {
			fmt.Fprintf(&b, `<a class="node" data-device="%s" href="/sites/%s/devices/%s">%s<title>%s</title></a>`,
				html.EscapeString(n.Name), url.PathEscape(site), url.PathEscape(n.Name), label, html.EscapeString(n.Name))
		} else {
			fmt.Fprintf(&b, `<g class="node unknown" data-device="%s">%s<title>%s (no neighbour samples of it at central: outside the site, or not polled yet)</title></g>`,
				html.EscapeString(n.Name), label, html.EscapeString(n.Name))
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}
