package peer

import (
	"fmt"
	"reflect"
	"testing"
	"time"
)

// A source seen in one look of the watch, for the tables below.
func src(stream, site string, active time.Duration, reachable, waiting bool) sourceState {
	return sourceState{key: sourceKey{stream: stream, site: site}, active: active, reachable: reachable, waiting: waiting}
}

// asking is src for a source in reach with its request for the consumer
// out, on reply.
func asking(stream, site string, active time.Duration, reply string) sourceState {
	s := src(stream, site, active, true, false)
	s.pending = reply
	return s
}

// outInCut is src for a source whose site is out of reach, with its
// request for the consumer out on reply.
func outInCut(stream, site string, active time.Duration, reply string) sourceState {
	s := src(stream, site, active, false, false)
	s.pending = reply
	return s
}

// TestSourceWatchDecide: what central's source watch does, look by look,
// in each case seen so far. Each step is one look at a time after the
// first; ask is the sources whose sites it asks about, and kick what it
// then sets again given answered.
func TestSourceWatchDecide(t *testing.T) {
	ev := func(site string) sourceKey { return sourceKey{stream: "EVENTS", site: site} }
	type step struct {
		at       time.Duration
		snap     sourcesSnapshot
		answered map[string]bool // by site; nil: every site asked answers
		retry    []sourceKey
		nudge    []sourceKey
		resend   []sourceRequest
		ask      []sourceKey
		kick     map[string][]string
	}
	s := time.Second
	ms := time.Millisecond
	cases := []struct {
		name  string
		steps []step
	}{
		{"flowing: nothing to do", []step{
			{at: 0, snap: sourcesSnapshot{src("EVENTS", "paris", 200*ms, true, false)}},
			{at: 10 * s, snap: sourcesSnapshot{src("EVENTS", "paris", 900*ms, true, false)}},
		}},
		{"fresh source, waiting on its site: nudged, and set again only after kickStale unheard", []step{
			{at: 0, snap: sourcesSnapshot{src("EVENTS", "paris", -1, true, true)}, nudge: []sourceKey{ev("paris")}},
			{at: 5 * s, snap: sourcesSnapshot{src("EVENTS", "paris", -1, true, true)}},
			{at: 6 * s, snap: sourcesSnapshot{src("EVENTS", "paris", -1, true, true)}},
			{at: 6100 * ms, snap: sourcesSnapshot{src("EVENTS", "paris", -1, true, true)},
				ask: []sourceKey{ev("paris")}, kick: map[string][]string{"EVENTS": {"paris"}}},
		}},
		{"fresh source that hears from its site: left alone", []step{
			{at: 0, snap: sourcesSnapshot{src("EVENTS", "paris", -1, true, true)}, nudge: []sourceKey{ev("paris")}},
			{at: 1 * s, snap: sourcesSnapshot{src("EVENTS", "paris", 50*ms, true, false)}},
			{at: 8 * s, snap: sourcesSnapshot{src("EVENTS", "paris", 900*ms, true, false)}},
		}},
		{"stall after a central peer's SIGKILL and restart: silent, site reachable, set again after kickGrace", []step{
			{at: 0, snap: sourcesSnapshot{src("EVENTS", "paris", 25*s, true, true)}, retry: []sourceKey{ev("paris")}},
			{at: 1 * s, snap: sourcesSnapshot{src("EVENTS", "paris", 26*s, true, true)}},
			{at: 2900 * ms, snap: sourcesSnapshot{src("EVENTS", "paris", 28*s, true, true)}},
			{at: 3 * s, snap: sourcesSnapshot{src("EVENTS", "paris", 28*s, true, true)},
				ask: []sourceKey{ev("paris")}, kick: map[string][]string{"EVENTS": {"paris"}}},
			// Still silent: backs off kickFirst, then twice that (each
			// ±20%: asked past 1.2 times the wait, not before 0.8 times).
			{at: 4500 * ms, snap: sourcesSnapshot{src("EVENTS", "paris", 29*s, true, true)}},
			{at: 5500 * ms, snap: sourcesSnapshot{src("EVENTS", "paris", 30*s, true, true)},
				ask: []sourceKey{ev("paris")}, kick: map[string][]string{"EVENTS": {"paris"}}},
			{at: 8600 * ms, snap: sourcesSnapshot{src("EVENTS", "paris", 33*s, true, true)}},
			{at: 10500 * ms, snap: sourcesSnapshot{src("EVENTS", "paris", 35*s, true, true)},
				ask: []sourceKey{ev("paris")}, kick: map[string][]string{"EVENTS": {"paris"}}},
			// Flowing again: the back-off starts afresh.
			{at: 11 * s, snap: sourcesSnapshot{src("EVENTS", "paris", 100*ms, true, false)}},
			{at: 18 * s, snap: sourcesSnapshot{src("EVENTS", "paris", 7*s, true, true)},
				ask: []sourceKey{ev("paris")}, kick: map[string][]string{"EVENTS": {"paris"}}},
			{at: 20500 * ms, snap: sourcesSnapshot{src("EVENTS", "paris", 9*s, true, true)},
				ask: []sourceKey{ev("paris")}, kick: map[string][]string{"EVENTS": {"paris"}}},
		}},
		{"stall after a scale-up: the site stayed reachable, the source went silent", []step{
			{at: 0, snap: sourcesSnapshot{src("EVENTS", "paris", 300*ms, true, false), src("METRICS", "paris", 300*ms, true, false)}},
			{at: 6 * s, snap: sourcesSnapshot{src("EVENTS", "paris", 6*s, true, true), src("METRICS", "paris", 6*s, true, true)}},
			{at: 7 * s, snap: sourcesSnapshot{src("EVENTS", "paris", 7*s, true, true), src("METRICS", "paris", 7*s, true, true)},
				ask:  []sourceKey{ev("paris"), {stream: "METRICS", site: "paris"}},
				kick: map[string][]string{"EVENTS": {"paris"}, "METRICS": {"paris"}}},
		}},
		{"short cut: the site back before its source backed off; the source missed a heartbeat: made to retry at once", []step{
			{at: 0, snap: sourcesSnapshot{src("EVENTS", "paris", 300*ms, true, false), src("METRICS", "paris", 700*ms, true, false)}},
			{at: 1 * s, snap: sourcesSnapshot{src("EVENTS", "paris", 1300*ms, false, true), src("METRICS", "paris", 1700*ms, false, true)}},
			// Back: EVENTS last heard 2.4 s ago missed a heartbeat; METRICS,
			// heard 1.2 s ago (its consumer's heartbeat, idle), is nudged.
			{at: 2 * s, snap: sourcesSnapshot{src("EVENTS", "paris", 2400*ms, true, true), src("METRICS", "paris", 1200*ms, true, true)},
				retry: []sourceKey{ev("paris")}, nudge: []sourceKey{{stream: "METRICS", site: "paris"}}},
			{at: 2500 * ms, snap: sourcesSnapshot{src("EVENTS", "paris", 10*ms, true, false), src("METRICS", "paris", 200*ms, true, false)}},
		}},
		{"site unreachable (loud cut, site down): never set again, however long silent", []step{
			{at: 0, snap: sourcesSnapshot{src("EVENTS", "paris", 20*s, false, false)}},
			{at: 60 * s, snap: sourcesSnapshot{src("EVENTS", "paris", 80*s, false, false)}},
		}},
		{"silent cut: the link looks up but the site does not answer; asked again at the next look, not set again", []step{
			{at: 0, snap: sourcesSnapshot{src("EVENTS", "paris", 500*ms, true, false)}},
			{at: 8 * s, snap: sourcesSnapshot{src("EVENTS", "paris", 8*s, true, false)},
				answered: map[string]bool{}, ask: []sourceKey{ev("paris")}, kick: map[string][]string{}},
			{at: 9 * s, snap: sourcesSnapshot{src("EVENTS", "paris", 9*s, true, false)},
				answered: map[string]bool{}, ask: []sourceKey{ev("paris")}, kick: map[string][]string{}},
			// The pings fail: the link is down.
			{at: 20 * s, snap: sourcesSnapshot{src("EVENTS", "paris", 20*s, false, false)}},
		}},
		{"site back, request lost in the cut: set again after kickLost", []step{
			{at: 0, snap: sourcesSnapshot{src("EVENTS", "paris", 40*s, false, false)}},
			{at: 1 * s, snap: sourcesSnapshot{src("EVENTS", "paris", 41*s, true, false)}},
			{at: 1200 * ms, snap: sourcesSnapshot{src("EVENTS", "paris", 41*s, true, false)}},
			{at: 1300 * ms, snap: sourcesSnapshot{src("EVENTS", "paris", 41*s, true, false)},
				ask: []sourceKey{ev("paris")}, kick: map[string][]string{"EVENTS": {"paris"}}},
		}},
		{"site back, request lost in the cut: sent again with its reply after kickLost, not set again", []step{
			{at: 0, snap: sourcesSnapshot{src("EVENTS", "paris", 40*s, false, false)}},
			{at: 1 * s, snap: sourcesSnapshot{asking("EVENTS", "paris", 41*s, "R1")}},
			{at: 1200 * ms, snap: sourcesSnapshot{asking("EVENTS", "paris", 41*s, "R1")}},
			{at: 1300 * ms, snap: sourcesSnapshot{asking("EVENTS", "paris", 41*s, "R1")},
				resend: []sourceRequest{{key: ev("paris"), reply: "R1"}}},
			// Answered: it resumes, and is left alone.
			{at: 1400 * ms, snap: sourcesSnapshot{src("EVENTS", "paris", 20*ms, true, true)}},
			{at: 5 * s, snap: sourcesSnapshot{src("EVENTS", "paris", 900*ms, true, true)}},
		}},
		{"site back, request seen out in the cut: sent again at once", []step{
			{at: 0, snap: sourcesSnapshot{outInCut("EVENTS", "paris", 40*s, "R1")}},
			{at: 1 * s, snap: sourcesSnapshot{asking("EVENTS", "paris", 41*s, "R1")},
				resend: []sourceRequest{{key: ev("paris"), reply: "R1"}}},
			// Not sent a second time, however long unanswered before kickGrace.
			{at: 1300 * ms, snap: sourcesSnapshot{asking("EVENTS", "paris", 41*s, "R1")}},
			{at: 1400 * ms, snap: sourcesSnapshot{src("EVENTS", "paris", 20*ms, true, true)}},
			{at: 5 * s, snap: sourcesSnapshot{src("EVENTS", "paris", 900*ms, true, true)}},
		}},
		{"site back, request seen out in the cut never answered: set again after kickGrace", []step{
			{at: 0, snap: sourcesSnapshot{outInCut("EVENTS", "paris", 40*s, "R1")}},
			{at: 1 * s, snap: sourcesSnapshot{asking("EVENTS", "paris", 41*s, "R1")},
				resend: []sourceRequest{{key: ev("paris"), reply: "R1"}}},
			{at: 3900 * ms, snap: sourcesSnapshot{asking("EVENTS", "paris", 44*s, "R1")}},
			{at: 4 * s, snap: sourcesSnapshot{asking("EVENTS", "paris", 44*s, "R1")},
				ask: []sourceKey{ev("paris")}, kick: map[string][]string{"EVENTS": {"paris"}}},
		}},
		{"site back with another request than the one seen out in the cut: it may be answered, sent again only after kickLost", []step{
			{at: 0, snap: sourcesSnapshot{outInCut("EVENTS", "paris", 40*s, "R1")}},
			{at: 1 * s, snap: sourcesSnapshot{asking("EVENTS", "paris", 41*s, "R2")}},
			{at: 1200 * ms, snap: sourcesSnapshot{asking("EVENTS", "paris", 41*s, "R2")}},
			{at: 1300 * ms, snap: sourcesSnapshot{asking("EVENTS", "paris", 41*s, "R2")},
				resend: []sourceRequest{{key: ev("paris"), reply: "R2"}}},
		}},
		{"a request seen out in the cut, then none: forgotten", []step{
			{at: 0, snap: sourcesSnapshot{outInCut("EVENTS", "paris", 40*s, "R1")}},
			{at: 5 * s, snap: sourcesSnapshot{src("EVENTS", "paris", 45*s, false, true)}},
			{at: 6 * s, snap: sourcesSnapshot{asking("EVENTS", "paris", 46*s, "R1")}},
			{at: 6300 * ms, snap: sourcesSnapshot{asking("EVENTS", "paris", 46*s, "R1")},
				resend: []sourceRequest{{key: ev("paris"), reply: "R1"}}},
		}},
		{"a site that comes back and drops again between looks: a request seen out in the first cut is still lost", []step{
			{at: 0, snap: sourcesSnapshot{outInCut("EVENTS", "paris", 40*s, "R1")}},
			{at: 1 * s, snap: sourcesSnapshot{outInCut("EVENTS", "paris", 41*s, "R1")}},
			{at: 2 * s, snap: sourcesSnapshot{asking("EVENTS", "paris", 42*s, "R1")},
				resend: []sourceRequest{{key: ev("paris"), reply: "R1"}}},
		}},
		{"site back, request answered before kickLost: nothing sent again", []step{
			{at: 0, snap: sourcesSnapshot{src("EVENTS", "paris", 40*s, false, false)}},
			{at: 1 * s, snap: sourcesSnapshot{asking("EVENTS", "paris", 41*s, "R1")}},
			{at: 1300 * ms, snap: sourcesSnapshot{src("EVENTS", "paris", 50*ms, true, true)}},
			{at: 5 * s, snap: sourcesSnapshot{src("EVENTS", "paris", 900*ms, true, true)}},
		}},
		{"site back, request sent again but never answered: set again after kickGrace", []step{
			{at: 0, snap: sourcesSnapshot{src("EVENTS", "paris", 40*s, false, false)}},
			{at: 1 * s, snap: sourcesSnapshot{asking("EVENTS", "paris", 41*s, "R1")}},
			{at: 1300 * ms, snap: sourcesSnapshot{asking("EVENTS", "paris", 41*s, "R1")},
				resend: []sourceRequest{{key: ev("paris"), reply: "R1"}}},
			{at: 3900 * ms, snap: sourcesSnapshot{asking("EVENTS", "paris", 44*s, "R1")}},
			{at: 4 * s, snap: sourcesSnapshot{asking("EVENTS", "paris", 44*s, "R1")},
				ask: []sourceKey{ev("paris")}, kick: map[string][]string{"EVENTS": {"paris"}}},
		}},
		{"site back, source waiting on it: made to retry at once, and left to resume by itself", []step{
			{at: 0, snap: sourcesSnapshot{src("EVENTS", "paris", 40*s, false, true)}},
			{at: 1 * s, snap: sourcesSnapshot{src("EVENTS", "paris", 41*s, true, true)}, retry: []sourceKey{ev("paris")}},
			// It asks the site (no subscription while the request is out).
			{at: 1100 * ms, snap: sourcesSnapshot{src("EVENTS", "paris", 41*s, true, false)}},
			{at: 1500 * ms, snap: sourcesSnapshot{src("EVENTS", "paris", 41*s, true, false)}},
			{at: 1600 * ms, snap: sourcesSnapshot{src("EVENTS", "paris", 20*ms, true, false)}},
			{at: 5 * s, snap: sourcesSnapshot{src("EVENTS", "paris", 300*ms, true, false)}},
		}},
		{"site back, source waiting but never resumes: set again after kickGrace", []step{
			{at: 0, snap: sourcesSnapshot{src("EVENTS", "paris", 40*s, false, true)}},
			{at: 1 * s, snap: sourcesSnapshot{src("EVENTS", "paris", 41*s, true, true)}, retry: []sourceKey{ev("paris")}},
			{at: 3900 * ms, snap: sourcesSnapshot{src("EVENTS", "paris", 43*s, true, true)}},
			{at: 4 * s, snap: sourcesSnapshot{src("EVENTS", "paris", 44*s, true, true)},
				ask: []sourceKey{ev("paris")}, kick: map[string][]string{"EVENTS": {"paris"}}},
		}},
		{"leader move: a source this peer leads again is new to it: made to retry, and left kickGrace to resume", []step{
			{at: 0, snap: sourcesSnapshot{src("EVENTS", "paris", 10*s, true, true)}, retry: []sourceKey{ev("paris")}},
			{at: 3 * s, snap: sourcesSnapshot{src("EVENTS", "paris", 13*s, true, true)},
				ask: []sourceKey{ev("paris")}, kick: map[string][]string{"EVENTS": {"paris"}}},
			// The stream's leadership moves away, then back.
			{at: 4 * s, snap: sourcesSnapshot{}},
			{at: 5 * s, snap: sourcesSnapshot{src("EVENTS", "paris", 15*s, true, true)}, retry: []sourceKey{ev("paris")}},
			{at: 7900 * ms, snap: sourcesSnapshot{src("EVENTS", "paris", 17*s, true, true)}},
			{at: 8 * s, snap: sourcesSnapshot{src("EVENTS", "paris", 18*s, true, true)},
				ask: []sourceKey{ev("paris")}, kick: map[string][]string{"EVENTS": {"paris"}}},
		}},
		{"source erroring (the site's stream is missing): kicks back off to kickMax", []step{
			// Waits 2, 4, 8, 16, 30, 30 s, each ±20%.
			{at: 0, snap: sourcesSnapshot{src("EVENTS", "paris", 7*s, true, true)}, retry: []sourceKey{ev("paris")}},
			{at: 3 * s, snap: sourcesSnapshot{src("EVENTS", "paris", 10*s, true, true)},
				ask: []sourceKey{ev("paris")}, kick: map[string][]string{"EVENTS": {"paris"}}},
			{at: 5500 * ms, snap: sourcesSnapshot{src("EVENTS", "paris", 12*s, true, true)},
				ask: []sourceKey{ev("paris")}, kick: map[string][]string{"EVENTS": {"paris"}}},
			{at: 10500 * ms, snap: sourcesSnapshot{src("EVENTS", "paris", 16*s, true, true)},
				ask: []sourceKey{ev("paris")}, kick: map[string][]string{"EVENTS": {"paris"}}},
			{at: 20500 * ms, snap: sourcesSnapshot{src("EVENTS", "paris", 24*s, true, true)},
				ask: []sourceKey{ev("paris")}, kick: map[string][]string{"EVENTS": {"paris"}}},
			{at: 40 * s, snap: sourcesSnapshot{src("EVENTS", "paris", 40*s, true, true)},
				ask: []sourceKey{ev("paris")}, kick: map[string][]string{"EVENTS": {"paris"}}},
			{at: 63 * s, snap: sourcesSnapshot{src("EVENTS", "paris", 69*s, true, true)}},
			{at: 76500 * ms, snap: sourcesSnapshot{src("EVENTS", "paris", 70*s, true, true)},
				ask: []sourceKey{ev("paris")}, kick: map[string][]string{"EVENTS": {"paris"}}},
			{at: 100 * s, snap: sourcesSnapshot{src("EVENTS", "paris", 99*s, true, true)}},
			{at: 113 * s, snap: sourcesSnapshot{src("EVENTS", "paris", 100*s, true, true)},
				ask: []sourceKey{ev("paris")}, kick: map[string][]string{"EVENTS": {"paris"}}},
		}},
		{"one site stalled, another flowing, a third cut off: only the stalled one", []step{
			{at: 0, snap: sourcesSnapshot{src("EVENTS", "paris", 9*s, true, true), src("EVENTS", "lyon", 100*ms, true, false), src("EVENTS", "nice", 9*s, false, false)},
				retry: []sourceKey{ev("paris")}},
			{at: 3 * s, snap: sourcesSnapshot{src("EVENTS", "paris", 12*s, true, true), src("EVENTS", "lyon", 100*ms, true, false), src("EVENTS", "nice", 12*s, false, false)},
				answered: map[string]bool{"paris": true}, ask: []sourceKey{ev("paris")}, kick: map[string][]string{"EVENTS": {"paris"}}},
		}},
	}
	t0 := time.Date(2026, 12, 3, 1, 0, 0, 0, time.UTC)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newSourceWatch()
			for i, st := range c.steps {
				now := t0.Add(st.at)
				plan := w.decide(st.snap, now)
				where := fmt.Sprintf("step %d (+%s)", i, st.at)
				if !reflect.DeepEqual(plan.retry, st.retry) {
					t.Errorf("%s: made to retry %v, want %v", where, plan.retry, st.retry)
				}
				if !reflect.DeepEqual(plan.resend, st.resend) {
					t.Errorf("%s: sent again %v, want %v", where, plan.resend, st.resend)
				}
				if !reflect.DeepEqual(plan.nudge, st.nudge) {
					t.Errorf("%s: nudged %v, want %v", where, plan.nudge, st.nudge)
				}
				if !reflect.DeepEqual(plan.ask, st.ask) {
					t.Errorf("%s: asked %v, want %v", where, plan.ask, st.ask)
				}
				if len(plan.ask) == 0 {
					continue
				}
				answered := st.answered
				if answered == nil {
					answered = map[string]bool{}
					for _, k := range plan.ask {
						answered[k.site] = true
					}
				}
				if got := w.kick(plan.ask, answered, now); !reflect.DeepEqual(got, st.kick) {
					t.Errorf("%s: set again %v, want %v", where, got, st.kick)
				}
			}
		})
	}
}

// TestSourceWatchDue: the watch looks every sourcesFull, and every poll
// while a site has just come within reach.
func TestSourceWatchDue(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 1, 0, 0, 0, time.UTC)
	paris := sourceKey{stream: "EVENTS", site: "paris"}
	w := newSourceWatch()
	if !w.due(t0, nil) {
		t.Fatal("not due at the first look")
	}
	w.decide(sourcesSnapshot{src("EVENTS", "paris", 20*time.Second, false, false)}, t0)
	for _, c := range []struct {
		name      string
		at        time.Duration
		reachable bool
		want      bool
	}{
		{"site out of reach, within sourcesFull", 500 * time.Millisecond, false, false},
		{"site out of reach, sourcesFull after", time.Second, false, true},
		{"site back, not yet in a look", 200 * time.Millisecond, true, true},
	} {
		if got := w.due(t0.Add(c.at), map[sourceKey]bool{paris: c.reachable}); got != c.want {
			t.Errorf("%s: due %v, want %v", c.name, got, c.want)
		}
	}
	// Back at +0.2 s: every poll until kickGrace (and a poll) after.
	back := sourcesSnapshot{src("EVENTS", "paris", 20*time.Second, true, true)}
	w.decide(back, t0.Add(200*time.Millisecond))
	if !w.due(t0.Add(300*time.Millisecond), map[sourceKey]bool{paris: true}) {
		t.Error("not due 0.1 s after the site came back")
	}
	w.decide(back, t0.Add(3200*time.Millisecond))
	if !w.due(t0.Add(3300*time.Millisecond), map[sourceKey]bool{paris: true}) {
		t.Error("not due 3.1 s after the site came back")
	}
	w.decide(back, t0.Add(3300*time.Millisecond))
	if w.due(t0.Add(3400*time.Millisecond), map[sourceKey]bool{paris: true}) {
		t.Error("due 3.2 s after the site came back, 0.1 s after the last look")
	}
}

// TestSourceWatchBlip: a link that drops and is made again between two
// looks (a site dials again within a quarter of a second) is a return all
// the same: the look after it makes the source, silent since the cut,
// retry at once.
func TestSourceWatchBlip(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 1, 0, 0, 0, time.UTC)
	paris := sourceKey{stream: "EVENTS", site: "paris"}
	ms := time.Millisecond
	w := newSourceWatch()
	w.decide(sourcesSnapshot{src("EVENTS", "paris", 100*ms, true, true)}, t0)
	// A silent cut: the link looks up, the source hears nothing.
	if !w.due(t0.Add(1000*ms), map[sourceKey]bool{paris: true}) {
		t.Fatal("not due at sourcesFull")
	}
	w.decide(sourcesSnapshot{src("EVENTS", "paris", 1100*ms, true, true)}, t0.Add(1000*ms))
	// The link drops at its end and is made again a poll later, inside one
	// sourcesFull.
	if w.due(t0.Add(1800*ms), map[sourceKey]bool{paris: false}) {
		t.Error("due while the site is out of reach, before sourcesFull")
	}
	if !w.due(t0.Add(1900*ms), map[sourceKey]bool{paris: true}) {
		t.Fatal("not due at the poll after the link came back")
	}
	plan := w.decide(sourcesSnapshot{src("EVENTS", "paris", 2000*ms, true, true)}, t0.Add(1900*ms))
	if want := []sourceKey{paris}; !reflect.DeepEqual(plan.retry, want) {
		t.Errorf("made to retry %v after the blip, want %v", plan.retry, want)
	}
}
