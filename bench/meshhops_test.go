package bench

import (
	"testing"
	"time"
)

func TestOfRun(t *testing.T) {
	for _, c := range []struct {
		id     string
		firstN int
		want   bool
	}{
		{"s1-100", 100, true},
		{"s12-250", 100, true},
		{"s1-99", 100, false},
		{"s1", 0, false},
		{"s1-x", 0, false},
	} {
		if got := ofRun(c.id, c.firstN); got != c.want {
			t.Errorf("ofRun(%q, %d) = %v, want %v", c.id, c.firstN, got, c.want)
		}
	}
}

// TestHopStats: every hop of a complete event is timed; an event missing
// a point of its path is left out.
func TestHopStats(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	events := map[string]*eventTimes{
		"s1-1": {observed: at(0), spooled: at(1), sent: at(3), siteStored: at(6), acked: at(10), centralStored: at(15), committed: at(21)},
		"s1-2": {observed: at(0), spooled: at(1)}, // never reached central
	}
	want := []string{"1ms", "2ms", "3ms", "4ms", "9ms", "6ms", "21ms"}
	hs := hopStats(events)
	if len(hs) != len(want) {
		t.Fatalf("%d hops, want %d", len(hs), len(want))
	}
	for i, h := range hs {
		if h.P50 != want[i] || h.P99 != want[i] || h.Max != want[i] {
			t.Errorf("hop %q: p50 %s p99 %s max %s, want %s", h.Name, h.P50, h.P99, h.Max, want[i])
		}
	}
	if got := hopQuantile(nil, 50); got != "-" {
		t.Errorf("quantile of nothing = %q, want -", got)
	}
}
