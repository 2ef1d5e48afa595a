package bus

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/meshmon/meshmon"
)

// TestReadNeighborsLastOfEachDevice: the topology is the last lldp sample
// of each device of the site, sorted by device, read through one consumer
// that is gone afterwards; other sites, other checks and a sample that
// does not decode are left out.
func TestReadNeighborsLastOfEachDevice(t *testing.T) {
	_, _, js := runJS(t)
	ctx := testCtx(t)
	publish := func(subject string, s any) {
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.Publish(ctx, subject, b); err != nil {
			t.Fatal(err)
		}
	}
	lldp := func(site, device string, neighbours int) {
		s := meshmon.Sample{Site: site, Device: device, Check: meshmon.CheckLLDP, Labels: map[string]string{meshmon.LabelSysName: device}}
		for i := range neighbours {
			s.Neighbors = append(s.Neighbors, meshmon.Neighbor{Protocol: meshmon.ProtocolLLDP, LocalPort: i + 1, ChassisID: fmt.Sprintf("n%d", i)})
		}
		publish("mx."+site+"."+device+"."+meshmon.CheckLLDP, s)
	}
	if got, err := ReadNeighbors(ctx, js, "lab"); err != nil || len(got) != 0 {
		t.Fatalf("no samples yet: %+v, %v; want none", got, err)
	}
	for round := 1; round <= 3; round++ {
		for _, d := range []string{"d3", "d1", "d2"} {
			lldp("lab", d, round)
		}
		lldp("paris", "d1", 9)
		publish("mx.lab.d1.if", meshmon.Sample{Site: "lab", Device: "d1", Check: "if"})
	}
	lldp("lab", "d2", 5)
	if _, err := js.Publish(ctx, "mx.lab.bad.lldp", []byte("not json")); err != nil {
		t.Fatal(err)
	}
	got, err := ReadNeighbors(ctx, js, "lab")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"d1": 3, "d2": 5, "d3": 3}
	if len(got) != len(want) {
		t.Fatalf("read %d devices, want %d: %+v", len(got), len(want), got)
	}
	for i, name := range []string{"d1", "d2", "d3"} {
		d := got[i]
		if d.Device != name || len(d.Table.Neighbors) != want[name] || d.Table.Local.SysName != name {
			t.Errorf("device %d: %s with %d neighbours (sys name %q); want %s with %d", i, d.Device, len(d.Table.Neighbors),
				d.Table.Local.SysName, name, want[name])
		}
	}
	s, err := js.Stream(ctx, MetricsStream)
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Consumers; n != 0 {
		t.Errorf("%d consumers left on %s after the reading; want 0", n, MetricsStream)
	}
	if _, err := ReadNeighbors(ctx, js, "no.such"); err == nil {
		t.Error("site no.such: read; want an error naming the site")
	}
}
