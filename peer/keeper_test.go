package peer

import (
	"fmt"
	"reflect"
	"testing"
	"time"
)

// TestKeeperDecide: what a site peer's keeper does, look by look, in each
// case seen so far. Each step is one look at a time after the keeper
// started.
func TestKeeperDecide(t *testing.T) {
	type step struct {
		at   time.Duration
		snap keeperSnapshot
		want []keeperAction
	}
	look := func(linked, beacon bool, consumers ...consumerState) keeperSnapshot {
		return keeperSnapshot{linked: linked, beacon: beacon, consumers: consumers}
	}
	leads, leadsKept, follows, followsKept := consumerState{leads: true}, consumerState{leads: true, kept: true}, consumerState{}, consumerState{kept: true}
	act := func(kind keeperActionKind, consumer int) keeperAction {
		return keeperAction{kind: kind, consumer: consumer}
	}
	s, ms := time.Second, time.Millisecond
	cases := []struct {
		name      string
		clustered bool
		steps     []step
	}{
		{"single peer, linked: nothing to do", false, []step{
			{at: 0, snap: look(true, false, leads, leads)},
			{at: 10 * s, snap: look(true, false, leads, leads)},
		}},
		{"single peer never linked since its start: its consumers start unstalled, nothing kept", false, []step{
			{at: 0, snap: look(false, false, leads, leads)},
			{at: 30 * s, snap: look(false, false, leads, leads)},
		}},
		{"single peer, link cut (loud, or a silent cut once the pings fail): kept until the link returns", false, []step{
			{at: 0, snap: look(true, false, leads, leads)},
			{at: 1 * s, snap: look(false, false, leads, leads), want: []keeperAction{act(keepOn, 0), act(keepOn, 1)}},
			{at: 1100 * ms, snap: look(false, false, leadsKept, leadsKept)},
			// A keeper that left on its own (idle, unstalled) is still
			// counted kept: it is not started again while the link is down.
			{at: 60 * s, snap: look(false, false, leadsKept, leadsKept)},
			{at: 61 * s, snap: look(true, false, leadsKept, leadsKept), want: []keeperAction{act(keepOff, 0), act(keepOff, 1)}},
			{at: 62 * s, snap: look(true, false, leads, leads)},
		}},
		{"cluster member linked: answers on the beacon", true, []step{
			{at: 0, snap: look(true, false, follows, follows), want: []keeperAction{{kind: beaconOn}}},
			{at: 100 * ms, snap: look(true, true, follows, follows)},
		}},
		{"cluster member that does not lead: its link cut, it keeps nothing and hands nothing on", true, []step{
			{at: 0, snap: look(true, true, follows, follows)},
			{at: 1 * s, snap: look(false, true, follows, follows), want: []keeperAction{{kind: beaconOff}}},
			{at: 10 * s, snap: look(false, false, follows, follows)},
		}},
		{"cluster member leading EVENTS: its link cut, keeps it and hands it on after handoffAfter, then every handoffEvery", true, []step{
			{at: 10 * s, snap: look(true, true, leads, follows)},
			{at: 10100 * ms, snap: look(false, true, leads, follows), want: []keeperAction{{kind: beaconOff}, act(keepOn, 0)}},
			{at: 10900 * ms, snap: look(false, false, leadsKept, follows)},
			{at: 11 * s, snap: look(false, false, leadsKept, follows), want: []keeperAction{act(handOff, 0)}},
			{at: 15900 * ms, snap: look(false, false, leadsKept, follows)},
			{at: 16 * s, snap: look(false, false, leadsKept, follows), want: []keeperAction{act(handOff, 0)}},
			// Handed on: another member leads it; the keeper leaves.
			{at: 17100 * ms, snap: look(false, false, followsKept, follows), want: []keeperAction{act(keepOff, 0)}},
			{at: 30 * s, snap: look(false, false, follows, follows)},
		}},
		{"cluster member whose link has not come up since its start: hands on only after handoffStartGrace", true, []step{
			{at: 0, snap: look(false, false, leads, leads)},
			{at: 5900 * ms, snap: look(false, false, leads, leads)},
			{at: 6 * s, snap: look(false, false, leads, leads), want: []keeperAction{act(handOff, 0), act(handOff, 1)}},
		}},
		{"leader move at the site while kept: the keeper leaves the consumer it no longer leads", false, []step{
			{at: 0, snap: look(true, false, leads, leads)},
			{at: 1 * s, snap: look(false, false, leads, leads), want: []keeperAction{act(keepOn, 0), act(keepOn, 1)}},
			{at: 2 * s, snap: look(false, false, followsKept, leadsKept), want: []keeperAction{act(keepOff, 0)}},
		}},
	}
	t0 := time.Date(2026, 12, 3, 1, 0, 0, 0, time.UTC)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			k := newKeeper(c.clustered, t0)
			for i, st := range c.steps {
				if got := k.decide(st.snap, t0.Add(st.at)); !reflect.DeepEqual(got, st.want) {
					t.Errorf("%s: %v, want %v", fmt.Sprintf("step %d (+%s)", i, st.at), got, st.want)
				}
			}
		})
	}
}

// TestShouldPrompt: which stall answers the keeper prompts a consumer on.
func TestShouldPrompt(t *testing.T) {
	cases := []struct {
		name                string
		linked, kept, leads bool
		want                bool
	}{
		{"linked, not kept, leads", true, false, true, true},
		{"link down: the answers are the keeper's own", false, false, true, false},
		{"kept: the keeper answers it", true, true, true, false},
		{"another member leads it", true, false, false, false},
	}
	for _, c := range cases {
		if got := shouldPrompt(c.linked, c.kept, c.leads); got != c.want {
			t.Errorf("%s: shouldPrompt = %v, want %v", c.name, got, c.want)
		}
	}
}
