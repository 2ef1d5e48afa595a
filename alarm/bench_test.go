package alarm

import (
	"fmt"
	"testing"
	"time"

	"github.com/meshmon/meshmon"
)

// BenchmarkApply folds a storm into a tenant's alarms: each device goes
// down, repeats, and comes back. It reports events applied per second.
func BenchmarkApply(b *testing.B) {
	const devices = 10000
	evs := make([]meshmon.Event, 0, 3*devices)
	for _, k := range []string{meshmon.KindNodeDown, meshmon.KindNodeDown, meshmon.KindNodeUp} {
		for i := range devices {
			evs = append(evs, ev(fmt.Sprintf("d%05d", i), "", k, "icmp", time.Second))
		}
	}
	s := NewSet("acme")
	b.ResetTimer()
	for i := range b.N {
		e := evs[i%len(evs)]
		s.Apply(e, uint64(i+1), e.Time)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkSelect100k filters 100,000 open alarms (one site's critical
// ones, sorted), as 'meshmon alarms list --site ... --severity critical'
// does once it has read them.
func BenchmarkSelect100k(b *testing.B) {
	alarms := make([]Alarm, 100000)
	sevs := Severities
	for i := range alarms {
		site := fmt.Sprintf("s%02d", i%50)
		alarms[i] = Alarm{ID: ID(site, fmt.Sprintf("d%05d", i), "icmp"), Site: site, Device: fmt.Sprintf("d%05d", i),
			State: StateOpen, Severity: sevs[i%len(sevs)], LastSeen: t0.Add(time.Duration(i) * time.Millisecond)}
	}
	f := Filter{Site: "s08", Severity: meshmon.SeverityCritical, State: StateOpen}
	b.ResetTimer()
	for range b.N {
		if got := Select(alarms, f); len(got) != 1000 {
			b.Fatalf("selected %d", len(got))
		}
	}
}

// BenchmarkSelectAll100k sorts all 100,000 open alarms (list without a
// filter).
func BenchmarkSelectAll100k(b *testing.B) {
	alarms := make([]Alarm, 100000)
	for i := range alarms {
		alarms[i] = Alarm{ID: ID("s", fmt.Sprintf("d%05d", i), "icmp"), State: StateOpen, Severity: Severities[i%4], LastSeen: t0.Add(time.Duration(i%977) * time.Second)}
	}
	b.ResetTimer()
	for range b.N {
		Select(alarms, Filter{})
	}
}
