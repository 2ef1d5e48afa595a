package peer

import (
	"reflect"
	"testing"
	"time"

	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/eventually"
)

// TestProgressWatchJudge: a source is stuck when its consumer holds
// messages for central and neither its delivered nor its acknowledged
// position moves for kickStale; judged again kickStale later.
func TestProgressWatchJudge(t *testing.T) {
	ev := func(site string) sourceKey { return sourceKey{stream: "EVENTS", site: site} }
	at := func(p siteProgress) map[sourceKey]siteProgress { return map[sourceKey]siteProgress{ev("paris"): p} }
	s := time.Second
	type step struct {
		at      time.Duration
		answers map[sourceKey]siteProgress
		stuck   []sourceKey
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"flowing: positions move", []step{
			{0, at(siteProgress{delivered: 10, acked: 10, held: 5}), nil},
			{5 * s, at(siteProgress{delivered: 20, acked: 18, held: 5}), nil},
			{10 * s, at(siteProgress{delivered: 30, acked: 30, held: 5}), nil},
			{15 * s, at(siteProgress{delivered: 30, acked: 31, held: 5}), nil},
		}},
		{"idle: nothing held, however long", []step{
			{0, at(siteProgress{delivered: 10, acked: 10}), nil},
			{10 * s, at(siteProgress{delivered: 10, acked: 10}), nil},
			{20 * s, at(siteProgress{delivered: 10, acked: 10}), nil},
		}},
		{"stuck: held, unmoved for kickStale; again after a back-off", []step{
			{0, at(siteProgress{delivered: 10, acked: 10, held: 5}), nil},
			{5 * s, at(siteProgress{delivered: 10, acked: 10, held: 9}), nil},
			{10 * s, at(siteProgress{delivered: 10, acked: 10, held: 12}), []sourceKey{ev("paris")}},
			// The first wait is stuckFirst ±20%: 4.8-7.2 s; then twice that.
			{14 * s, at(siteProgress{delivered: 10, acked: 10, held: 15}), nil},
			{18 * s, at(siteProgress{delivered: 10, acked: 10, held: 15}), []sourceKey{ev("paris")}},
			{27 * s, at(siteProgress{delivered: 10, acked: 10, held: 15}), nil},
			{33 * s, at(siteProgress{delivered: 10, acked: 10, held: 15}), []sourceKey{ev("paris")}},
			// Moving again: the count starts afresh.
			{35 * s, at(siteProgress{delivered: 40, acked: 40, held: 1}), nil},
			{40 * s, at(siteProgress{delivered: 40, acked: 40, held: 1}), nil},
			{41 * s, at(siteProgress{delivered: 40, acked: 40, held: 1}), []sourceKey{ev("paris")}},
		}},
		{"a site that does not answer is judged afresh", []step{
			{0, at(siteProgress{delivered: 10, acked: 10, held: 5}), nil},
			{5 * s, nil, nil},
			{10 * s, at(siteProgress{delivered: 10, acked: 10, held: 5}), nil},
			{15 * s, at(siteProgress{delivered: 10, acked: 10, held: 5}), nil},
			{20 * s, at(siteProgress{delivered: 10, acked: 10, held: 5}), []sourceKey{ev("paris")}},
		}},
		{"delivered, not acknowledged: stuck too", []step{
			{0, at(siteProgress{delivered: 50, acked: 10, held: 40}), nil},
			{6 * s, at(siteProgress{delivered: 50, acked: 10, held: 40}), []sourceKey{ev("paris")}},
		}},
	}
	t0 := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newProgressWatch()
			for i, st := range tc.steps {
				if got := w.judge(st.answers, t0.Add(st.at)); !reflect.DeepEqual(got, st.stuck) {
					t.Fatalf("step %d (at %s): stuck %v, want %v", i, st.at, got, st.stuck)
				}
			}
		})
	}
}

// TestProgressWatchDue: the sites are asked every progressEvery, about
// every reachable source not already asked about.
func TestProgressWatchDue(t *testing.T) {
	w := newProgressWatch()
	t0 := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	snap := sourcesSnapshot{src("EVENTS", "paris", 0, true, false), src("METRICS", "paris", 0, true, false), src("EVENTS", "lyon", 0, false, false)}
	ask := []sourceKey{{stream: "METRICS", site: "paris"}}
	want := []sourceKey{{stream: "EVENTS", site: "paris"}}
	if got := w.toProbe(snap, ask, t0); !reflect.DeepEqual(got, want) {
		t.Fatalf("first look: %v, want %v", got, want)
	}
	if got := w.toProbe(snap, nil, t0.Add(progressEvery-time.Millisecond)); got != nil {
		t.Fatalf("before progressEvery: %v, want none", got)
	}
	if got := w.toProbe(snap, nil, t0.Add(progressEvery)); len(got) != 2 {
		t.Fatalf("at progressEvery: %v, want both of paris's sources", got)
	}
}

// TestStuckSourceIsSetAgain: a site's source consumer that keeps its
// heartbeat and delivers nothing (here paused at the site for an hour)
// holds central back although its source never looks silent. Central's
// watch sees that the site holds messages for it and that the consumer's
// positions do not move, says so, and sets the source again (which does
// not end a pause: once the consumer is resumed, the events arrive).
func TestStuckSourceIsSetAgain(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	w := &logWatch{}
	cjs := peerJS(t, startPeerLog(t, centralConfig(t, "c1"), w))
	if err := bus.AddSite(ctx, cjs, "paris", time.Now()); err != nil {
		t.Fatal(err)
	}
	join, err := bus.Join(ctx, cjs)
	if err != nil {
		t.Fatal(err)
	}
	paris := peerJS(t, startPeer(t, siteConfig(t, "paris", join)))
	publishSite(t, paris, "paris", 0, 100)
	waitCount(t, cjs, "paris", 100, 20*time.Second)

	consumer := bus.SourceConsumer(bus.EventsStream)
	if _, err := paris.PauseConsumer(ctx, bus.EventsStream, consumer, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	publishSite(t, paris, "paris", 100, 100)
	for _, line := range []string{"source made no progress", "set sources again: " + kickStuck} {
		eventually.NoError(t, 30*time.Second, line, func() error { return w.has(line) })
	}
	// The source was heard from all along: silence alone would not have
	// shown this.
	if a, err := sourceActive(ctx, cjs, "paris"); err != nil || a > kickStale {
		t.Fatalf("paris's source last heard %s ago (%v); want the heartbeat going on", a, err)
	}
	if _, err := paris.ResumeConsumer(ctx, bus.EventsStream, consumer); err != nil {
		t.Fatal(err)
	}
	waitCount(t, cjs, "paris", 200, 30*time.Second)
}
