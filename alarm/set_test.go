package alarm

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/meshmon/meshmon"
)

var t0 = time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)

// ev builds an event of kind on device's check at t0+at.
func ev(device, parent, kind, check string, at time.Duration) meshmon.Event {
	sev := meshmon.SeverityCleared
	switch kind {
	case meshmon.KindNodeDown:
		sev = meshmon.SeverityCritical
	case meshmon.KindSNMPUnreachable, meshmon.KindIfDown:
		sev = meshmon.SeverityMajor
	case meshmon.KindFlapping:
		sev = meshmon.SeverityWarning
	}
	return meshmon.Event{Time: t0.Add(at), Data: meshmon.EventData{Tenant: "acme", Site: "par", Device: device, Parent: parent,
		Kind: kind, Check: check, Severity: sev, Message: kind + " " + device}}
}

func whats(cs []Change) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.What+" "+c.Alarm.ID)
	}
	return out
}

func TestApplyOpenRepeatClear(t *testing.T) {
	s := NewSet("acme")
	steps := []struct {
		ev   meshmon.Event
		want []string
	}{
		{ev("r1", "", meshmon.KindNodeDown, "icmp", 0), []string{"opened par.r1.icmp"}},
		{ev("r1", "", meshmon.KindNodeDown, "icmp", time.Second), []string{"repeated par.r1.icmp"}},
		{ev("r1", "", meshmon.KindFlapping, "icmp", 2*time.Second), []string{"severity par.r1.icmp"}},
		{ev("r1", "", meshmon.KindIfDown, "if.2", 3*time.Second), []string{"opened par.r1.if_2"}},
		{ev("r1", "", meshmon.KindReboot, "uptime", 3*time.Second), nil},
		{ev("r1", "", meshmon.KindNodeUp, "icmp", 4*time.Second), []string{"cleared par.r1.icmp"}},
		{ev("r1", "", meshmon.KindNodeUp, "icmp", 5*time.Second), nil},
		{ev("r1", "", meshmon.KindNodeDown, "icmp", 6*time.Second), []string{"opened par.r1.icmp"}},
	}
	for i, st := range steps {
		got := s.Apply(st.ev, uint64(i+1), st.ev.Time)
		if !slices.Equal(whats(got), st.want) {
			t.Fatalf("step %d: changes %v, want %v", i, whats(got), st.want)
		}
	}
	a, _ := s.Get("par.r1.icmp")
	if a.Opened != 2 || a.Count != 1 || a.State != StateOpen || a.Seq != 5 || a.EventSeq != 8 || !a.FirstSeen.Equal(t0.Add(6*time.Second)) {
		t.Fatalf("reopened alarm: %+v", a)
	}
}

func TestApplyIdempotentBySeq(t *testing.T) {
	s := NewSet("acme")
	e := ev("r1", "", meshmon.KindNodeDown, "icmp", 0)
	if got := s.Apply(e, 7, t0); len(got) != 1 {
		t.Fatalf("first apply: %v", whats(got))
	}
	for _, seq := range []uint64{7, 6, 1} {
		if got := s.Apply(e, seq, t0); len(got) != 0 {
			t.Fatalf("event at seq %d applied again: %v", seq, whats(got))
		}
	}
	if got := s.Apply(ev("r1", "", meshmon.KindNodeUp, "icmp", time.Second), 5, t0); len(got) != 0 {
		t.Fatalf("an older recovery cleared: %v", whats(got))
	}
}

// TestRewind: after central's EVENTS lost the events past seq 5 and
// numbers new ones from 6 again, an alarm changed at 8 takes a recovery
// at 6 as new once rewound, and only the alarms past 5 are lowered.
func TestRewind(t *testing.T) {
	s := NewSet("acme")
	s.Apply(ev("r1", "", meshmon.KindNodeDown, "icmp", 0), 3, t0)
	s.Apply(ev("r2", "", meshmon.KindNodeDown, "icmp", 0), 8, t0)
	up := ev("r2", "", meshmon.KindNodeUp, "icmp", time.Second)
	if got := s.Apply(up, 6, t0); len(got) != 0 {
		t.Fatalf("a recovery at 6 before the rewind: %v", whats(got))
	}
	rewound := s.Rewind(5)
	if len(rewound) != 1 || rewound[0].ID != ID("par", "r2", "icmp") || rewound[0].EventSeq != 5 {
		t.Fatalf("rewound %+v, want r2 at 5", rewound)
	}
	if got := s.Apply(up, 6, t0); len(got) != 1 || got[0].What != WhatCleared {
		t.Fatalf("the recovery at 6 after the rewind: %v", whats(got))
	}
	if a, _ := s.Get(ID("par", "r1", "icmp")); a.EventSeq != 3 {
		t.Fatalf("r1 at %d, want 3", a.EventSeq)
	}
}

func TestApplyLate(t *testing.T) {
	s := NewSet("acme")
	e := ev("r1", "", meshmon.KindNodeDown, "icmp", 0)
	if c := s.Apply(e, 1, t0.Add(DefaultLateAfter)); c[0].Late {
		t.Fatal("a change applied a minute after its event is late")
	}
	if c := s.Apply(ev("r1", "", meshmon.KindNodeUp, "icmp", time.Second), 2, t0.Add(2*time.Minute)); !c[0].Late {
		t.Fatal("a change applied two minutes after its event is not late")
	}
	s = NewSet("acme")
	s.LateAfter = 10 * time.Second
	if c := s.Apply(e, 1, t0.Add(10*time.Second)); c[0].Late {
		t.Fatal("a change applied its LateAfter (10 s) after its event is late")
	}
	if c := s.Apply(ev("r1", "", meshmon.KindNodeUp, "icmp", time.Second), 2, t0.Add(12*time.Second)); !c[0].Late {
		t.Fatal("a change applied 11 s after its event, with a LateAfter of 10 s, is not late")
	}
}

// TestApplyRebootFlapping: reboot flapping opens the device's uptime alarm,
// and the stable event the poller sends once the reboots stop clears it.
func TestApplyRebootFlapping(t *testing.T) {
	s := NewSet("acme")
	steps := []struct {
		ev   meshmon.Event
		want []string
	}{
		{ev("r1", "", meshmon.KindReboot, "uptime", 0), nil},
		{ev("r1", "", meshmon.KindFlapping, "uptime", time.Second), []string{"opened par.r1.uptime"}},
		{ev("r1", "", meshmon.KindStable, "uptime", time.Hour), []string{"cleared par.r1.uptime"}},
		{ev("r1", "", meshmon.KindStable, "uptime", 2*time.Hour), nil},
	}
	for i, st := range steps {
		if got := s.Apply(st.ev, uint64(i+1), st.ev.Time); !slices.Equal(whats(got), st.want) {
			t.Fatalf("step %d: changes %v, want %v", i, whats(got), st.want)
		}
	}
}

func TestApplyTrapRules(t *testing.T) {
	s := NewSet("acme")
	trap := func(label, idx string) meshmon.Event {
		e := ev("sw1", "", meshmon.KindTrap, "trap", 0)
		e.Data.Severity = meshmon.SeverityInfo
		e.Data.Trap = &meshmon.Trap{Labels: map[string]string{"trap": label, "if_index": idx}}
		return e
	}
	steps := []struct {
		ev   meshmon.Event
		want []string
	}{
		{trap("linkDown", "3"), []string{"opened par.sw1.if_3"}},
		{ev("sw1", "", meshmon.KindIfDown, "if.3", time.Second), []string{"repeated par.sw1.if_3"}},
		{trap("linkUp", "3"), []string{"cleared par.sw1.if_3"}},
		{trap("coldStart", ""), []string{"opened par.sw1.trap_coldStart"}},
		{trap("authenticationFailure", ""), nil},
		{trap("linkDown", ""), nil},
	}
	for i, st := range steps {
		if got := s.Apply(st.ev, uint64(i+1), t0); !slices.Equal(whats(got), st.want) {
			t.Fatalf("step %d: changes %v, want %v", i, whats(got), st.want)
		}
	}
	if a, _ := s.Get("par.sw1.trap_coldStart"); a.Severity != meshmon.SeverityWarning {
		t.Fatalf("coldStart alarm severity %q", a.Severity)
	}
}

// TestRouterWith50Children: a router goes down with 50 devices behind it:
// one real alarm and 50 symptoms, whichever comes first; the router's
// recovery ends every symptom.
func TestRouterWith50Children(t *testing.T) {
	for _, routerFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("router_first=%v", routerFirst), func(t *testing.T) {
			s := NewSet("acme")
			var seq uint64
			apply := func(e meshmon.Event) []Change { seq++; return s.Apply(e, seq, e.Time) }
			var changes []Change
			if routerFirst {
				changes = append(changes, apply(ev("router", "", meshmon.KindNodeDown, "icmp", 0))...)
			}
			for i := range 50 {
				changes = append(changes, apply(ev(fmt.Sprintf("d%02d", i), "router", meshmon.KindNodeDown, "icmp", time.Second))...)
			}
			if !routerFirst {
				changes = append(changes, apply(ev("router", "", meshmon.KindNodeDown, "icmp", 2*time.Second))...)
			}
			real, symptoms := 0, 0
			for _, a := range s.All() {
				switch {
				case a.State != StateOpen:
				case a.SymptomOf == "par.router.icmp":
					symptoms++
				case a.SymptomOf == "":
					real++
				}
			}
			if real != 1 || symptoms != 50 {
				t.Fatalf("%d real alarms and %d symptoms, want 1 and 50", real, symptoms)
			}
			// What would page: the changes of alarms that were no
			// symptoms when they opened or changed.
			paged := 0
			for _, c := range changes {
				if c.What == WhatOpened && c.Alarm.SymptomOf == "" && (routerFirst || c.Alarm.Device == "router") {
					paged++
				}
			}
			if routerFirst && paged != 1 {
				t.Fatalf("%d opened changes without SymptomOf, want 1", paged)
			}
			got := apply(ev("router", "", meshmon.KindNodeUp, "icmp", 3*time.Second))
			if len(got) != 51 || got[0].What != WhatCleared {
				t.Fatalf("router recovery made %d changes (%v), want its clear and 50 symptoms ended", len(got), whats(got)[:min(3, len(got))])
			}
			for _, c := range got[1:] {
				if c.What != WhatSymptom || c.Alarm.SymptomOf != "" || c.Alarm.State != StateOpen {
					t.Fatalf("child change %+v", c)
				}
			}
		})
	}
}

// TestResumeAfterPartialPublish: a processor publishes a prefix of an
// event's changes and dies; the next one loads what was published (the
// latest change of each alarm), applies from Applied() on, and makes
// exactly the changes that were not published: together, the same changes
// with the same MsgIDs, none twice.
func TestResumeAfterPartialPublish(t *testing.T) {
	events := []meshmon.Event{ev("router", "", meshmon.KindNodeDown, "icmp", 0)}
	for i := range 10 {
		events = append(events, ev(fmt.Sprintf("d%d", i), "router", meshmon.KindNodeDown, "icmp", time.Second))
	}
	events = append(events, ev("router", "", meshmon.KindNodeUp, "icmp", 2*time.Second), ev("d3", "router", meshmon.KindNodeUp, "icmp", 3*time.Second))
	var want []Change
	ref := NewSet("acme")
	for i, e := range events {
		want = append(want, ref.Apply(e, uint64(i+1), e.Time)...)
	}
	for cut := range want {
		s := NewSet("acme")
		for _, c := range want[:cut] {
			s.Load(c.Alarm)
		}
		got := slices.Clone(want[:cut])
		for i, e := range events {
			if seq := uint64(i + 1); seq >= s.Applied() {
				got = append(got, s.Apply(e, seq, e.Time)...)
			}
		}
		if !slices.EqualFunc(got, want, func(a, b Change) bool { return a.MsgID() == b.MsgID() && a.What == b.What }) {
			t.Fatalf("cut after %d changes: got %v, want %v", cut, whats(got), whats(want))
		}
	}
}

func TestAct(t *testing.T) {
	s := NewSet("acme")
	s.Apply(ev("r1", "", meshmon.KindNodeDown, "icmp", 0), 1, t0)
	s.Apply(ev("d1", "r1", meshmon.KindNodeDown, "icmp", 0), 2, t0)
	now := t0.Add(time.Minute)
	steps := []struct {
		act     Action
		want    []string
		wantErr error
	}{
		{Action{Verb: VerbAck, ID: "par.r1.icmp", By: "ann", Text: "on it"}, []string{"acked par.r1.icmp"}, nil},
		{Action{Verb: VerbAck, ID: "par.r1.icmp", By: "bob"}, nil, ErrNoChange},
		{Action{Verb: VerbComment, ID: "par.r1.icmp", By: "bob", Text: "fibre cut"}, []string{"commented par.r1.icmp"}, nil},
		{Action{Verb: VerbComment, ID: "par.r1.icmp", By: "bob"}, nil, ErrInvalidAction},
		{Action{Verb: VerbUnack, ID: "par.r1.icmp", By: "bob"}, []string{"unacked par.r1.icmp"}, nil},
		{Action{Verb: VerbUnack, ID: "par.r1.icmp", By: "bob"}, nil, ErrNoChange},
		{Action{Verb: VerbAck, ID: "par.nope.icmp", By: "bob"}, nil, ErrNotFound},
		{Action{Verb: "close", ID: "par.r1.icmp", By: "bob"}, nil, ErrInvalidAction},
		{Action{Verb: VerbAck, ID: "par.r1.icmp"}, nil, ErrInvalidAction},
		{Action{Verb: VerbClear, ID: "par.r1.icmp", By: "adm"}, []string{"cleared par.r1.icmp", "symptom par.d1.icmp"}, nil},
		{Action{Verb: VerbClear, ID: "par.r1.icmp", By: "adm"}, nil, ErrNotOpen},
	}
	for i, st := range steps {
		got, err := s.Act(st.act, now)
		if !errors.Is(err, st.wantErr) || !slices.Equal(whats(got), st.want) {
			t.Fatalf("step %d: %v, %v; want %v, %v", i, whats(got), err, st.want, st.wantErr)
		}
		if err == nil && got[0].By != st.act.By {
			t.Fatalf("step %d: change By %q", i, got[0].By)
		}
	}
	a, _ := s.Get("par.r1.icmp")
	if len(a.Comments) != 2 || a.Comments[0].Text != "on it" || a.ClearedBy != "adm" || a.Acked {
		t.Fatalf("alarm after actions: %+v", a)
	}
}

func TestFilterSelect(t *testing.T) {
	s := NewSet("acme")
	s.Apply(ev("r1", "", meshmon.KindNodeDown, "icmp", 0), 1, t0)
	s.Apply(ev("r1", "", meshmon.KindIfDown, "if.1", 0), 2, t0)
	s.Apply(ev("r2", "", meshmon.KindSNMPUnreachable, "snmp", time.Second), 3, t0)
	s.Apply(ev("r2", "", meshmon.KindNodeDown, "icmp", 0), 4, t0)
	s.Apply(ev("r2", "", meshmon.KindNodeUp, "icmp", time.Second), 5, t0)
	ids := func(as []Alarm) []string {
		var out []string
		for _, a := range as {
			out = append(out, a.ID)
		}
		return out
	}
	cases := []struct {
		f    Filter
		want []string
	}{
		{Filter{}, []string{"par.r1.icmp", "par.r2.snmp", "par.r1.if_1", "par.r2.icmp"}},
		{Filter{State: StateOpen, Severity: meshmon.SeverityMajor}, []string{"par.r2.snmp", "par.r1.if_1"}},
		{Filter{Device: "r2"}, []string{"par.r2.snmp", "par.r2.icmp"}},
		{Filter{Device: "r2", State: StateAll}, []string{"par.r2.snmp", "par.r2.icmp"}},
		{Filter{Site: "ber"}, nil},
	}
	for _, c := range cases {
		if got := ids(Select(s.All(), c.f)); !slices.Equal(got, c.want) {
			t.Errorf("%+v: %v, want %v", c.f, got, c.want)
		}
	}
	if err := (Filter{Severity: "bad"}).Validate(); err == nil {
		t.Error("a bad severity passes")
	}
	if err := (Filter{State: StateAll}).Validate(); err != nil {
		t.Errorf("state all: %v", err)
	}
}
