package bench

import (
	"os"
	"path/filepath"
	"strings"
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

// TestWriteTrace: one row an event timed at every point, in the order
// they were observed, each point in milliseconds from the first
// observation; an event missing a point is left out.
func TestWriteTrace(t *testing.T) {
	t0 := time.UnixMilli(1_000_000)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	events := map[string]*eventTimes{
		"s2-7": {observed: at(5), spooled: at(6), sent: at(8), siteStored: at(11), acked: at(15), centralStored: at(20), committed: at(26)},
		"s1-3": {observed: at(0), spooled: at(1), sent: at(3), siteStored: at(6), acked: at(10), centralStored: at(15), committed: at(21)},
		"s1-4": {observed: at(1), spooled: at(2)}, // never reached central
	}
	path := filepath.Join(t.TempDir(), "trace.csv")
	if err := writeTrace(path, events); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := "id,site,observed_unix_ms,observed_ms,spooled_ms,sent_ms,site_stored_ms,acked_ms,central_stored_ms,committed_ms\n" +
		"s1-3,s1,1000000.000,0.000,1.000,3.000,6.000,10.000,15.000,21.000\n" +
		"s2-7,s2,1000005.000,5.000,6.000,8.000,11.000,15.000,20.000,26.000\n"
	if string(got) != want {
		t.Errorf("trace:\n%s\nwant:\n%s", got, want)
	}
	if err := writeTrace(filepath.Join(t.TempDir(), "no", "such", "dir"), events); err == nil || !strings.Contains(err.Error(), "--latency-trace") {
		t.Errorf("a trace to a missing directory: %v, want an error naming --latency-trace", err)
	}
}

// TestResumedAt: the slowest and fastest site's first event after a cut,
// and each site's in site order.
func TestResumedAt(t *testing.T) {
	first, earliest, each := resumedAt(map[string]time.Duration{
		"s2": 700 * time.Millisecond, "s1": 1500 * time.Millisecond, "s3": 400*time.Millisecond + 123*time.Microsecond,
	})
	if first != 1500*time.Millisecond || earliest != 400*time.Millisecond+123*time.Microsecond {
		t.Errorf("first %s, earliest %s", first, earliest)
	}
	if want := "s1 1.5s, s2 700ms, s3 400ms"; each != want {
		t.Errorf("each = %q, want %q", each, want)
	}
}

// TestLinkWatch: a site's link counts as up again at the first look that
// lists a link of it not listed when the cut ended.
func TestLinkWatch(t *testing.T) {
	ms := time.Millisecond
	w := newLinkWatch(map[string][]string{"s1": {"c1/5"}, "s2": {"c2/7"}})
	w.look(map[string][]string{"s1": {"c1/5"}, "s2": {"c2/7"}}, 5*ms) // not yet closed by the proxies
	w.look(map[string][]string{"s2": {"c2/7", "c3/9"}}, 20*ms)
	w.look(map[string][]string{"s1": {"c1/11"}, "s2": {"c3/9"}, "s3": {"c1/12"}}, 40*ms)
	w.look(map[string][]string{"s1": {"c1/11"}, "s2": {"c3/9"}, "s3": {"c1/12"}}, 60*ms)
	_, _, each := resumedAt(w.up)
	if want := "s1 40ms, s2 20ms, s3 40ms"; each != want {
		t.Errorf("links up: %q, want %q", each, want)
	}
}

// TestMeshConfigValidate: --wan-delay takes 0 to maxWANDelay, and an error
// names the flag and the rule.
func TestMeshConfigValidate(t *testing.T) {
	ok := MeshConfig{Sites: 3, Events: 20000, Rate: 5000, Cuts: 3, CutFor: 30 * time.Second, CutMode: "silent", Publishers: 1, DrainBatch: 256}
	if err := ok.validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, d := range []time.Duration{0, 50 * time.Millisecond, maxWANDelay} {
		c := ok
		c.WANDelay = d
		if err := c.validate(); err != nil {
			t.Errorf("--wan-delay %s: %v", d, err)
		}
	}
	for _, d := range []time.Duration{-time.Millisecond, maxWANDelay + time.Millisecond} {
		c := ok
		c.WANDelay = d
		err := c.validate()
		if err == nil || !strings.Contains(err.Error(), "--wan-delay") || !strings.Contains(err.Error(), "must be 0 to 500ms") {
			t.Errorf("--wan-delay %s: err %v, want one naming the flag and its range", d, err)
		}
	}
	if got := overWAN(0); got != "" {
		t.Errorf("overWAN(0) = %q, want nothing", got)
	}
	if got := overWAN(50 * time.Millisecond); got != ", 50ms each way on the links" {
		t.Errorf("overWAN(50ms) = %q", got)
	}
}
