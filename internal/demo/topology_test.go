package demo

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/sim"
)

// TestTopologyThroughMetrics: a poller reads the LLDP and CDP tables of
// simulated devices forming a tree, over real SNMP, and publishes them as
// lldp samples to an embedded JetStream peer; the links read back from
// METRICS (last sample per device) are exactly the simulator's, each
// seen from both ends, and its uplink an unknown neighbour.
func TestTopologyThroughMetrics(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d, err := Start(ctx, Config{Dir: t.TempDir(), Listen: "127.0.0.1:0", Devices: 7, Interval: time.Second,
		Version: "test", Topology: sim.TopologyTree})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	want := linkKeys(d.Sim.Links())
	var got []string
	var links []meshmon.Link
	eventually.True(t, time.Minute, "the simulator's links come back from METRICS", func() bool {
		devs, err := bus.ReadNeighbors(ctx, d.JS, "demo")
		if err != nil {
			t.Logf("read neighbours: %v", err)
			return false
		}
		links = meshmon.Links(devs, nil)
		got = got[:0]
		for _, l := range links {
			got = append(got, linkKey(l.A.Device, l.A.Port, l.B.Device, l.B.Port))
		}
		slices.Sort(got)
		// Until every device's sample is in, a link may be seen from one
		// end, and its other end be unknown.
		return slices.Equal(got, want) && !slices.ContainsFunc(links, func(l meshmon.Link) bool {
			return l.B.Device != sim.UplinkSysName && (!l.Both || !l.A.Known || !l.B.Known)
		})
	})
	for _, l := range links {
		if l.B.Device == sim.UplinkSysName && (l.B.Known || l.B.ChassisID != sim.UplinkChassis) {
			t.Errorf("uplink end %+v: want unknown, chassis %s", l.B, sim.UplinkChassis)
		}
	}
}

func linkKeys(links []sim.Link) []string {
	var out []string
	for _, l := range links {
		out = append(out, linkKey(l.A.Device, l.A.Port, l.B.Device, l.B.Port))
	}
	slices.Sort(out)
	return out
}

func linkKey(a, ap, b, bp string) string {
	if a > b {
		a, ap, b, bp = b, bp, a, ap
	}
	return a + ":" + ap + "-" + b + ":" + bp
}
