package notify_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshmon/meshmon/alarm"
	"github.com/meshmon/meshmon/notify"
)

func change(what string, f func(*alarm.Alarm)) alarm.Change {
	at := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	a := alarm.Alarm{ID: "paris.rtr1.icmp", Site: "paris", Device: "rtr1", Check: "icmp", Kind: "node_down", Severity: "critical",
		State: alarm.StateOpen, Opened: 1, Seq: 4, FirstSeen: at, LastSeen: at}
	if f != nil {
		f(&a)
	}
	return alarm.Change{What: what, At: at, Alarm: a}
}

var rules = []notify.Rule{
	{Name: "crit", Severities: []string{"critical"}, Channels: []string{"pager", "chat"},
		Escalation: []notify.Step{{After: 10 * time.Minute, Channel: "oncall"}, {After: 30 * time.Minute, Channel: "manager"}}},
	{Name: "paris", Sites: []string{"paris"}, Channels: []string{"chat", "mail"}},
	{Name: "lyon", Sites: []string{"lyon"}, Channels: []string{"lyon-mail"}},
}

func TestDecide(t *testing.T) {
	now := time.Date(2026, 12, 3, 9, 0, 5, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		c        alarm.Change
		sends    []string // channels
		cancel   bool
		schedule int
		late     bool
	}{
		{"opened pages each channel once and escalates", change(alarm.WhatOpened, nil), []string{"pager", "chat", "mail"}, false, 1, false},
		{"opened late is marked late", func() alarm.Change { c := change(alarm.WhatOpened, nil); c.Late = true; return c }(), []string{"pager", "chat", "mail"}, false, 1, true},
		{"a major one matches the site rule only", change(alarm.WhatOpened, func(a *alarm.Alarm) { a.Severity = "major" }), []string{"chat", "mail"}, false, 0, false},
		{"severity pages", change(alarm.WhatSeverity, nil), []string{"pager", "chat", "mail"}, false, 1, false},
		{"repeated is quiet", change(alarm.WhatRepeated, nil), nil, false, 0, false},
		{"commented is quiet", change(alarm.WhatCommented, nil), nil, false, 0, false},
		{"cleared pages and stops", change(alarm.WhatCleared, func(a *alarm.Alarm) { a.State = alarm.StateCleared }), []string{"pager", "chat", "mail"}, true, 0, false},
		{"acked stops", change(alarm.WhatAcked, func(a *alarm.Alarm) { a.Acked = true }), nil, true, 0, false},
		{"unacked starts again", change(alarm.WhatUnacked, nil), nil, true, 1, false},
		{"a symptom does not page", change(alarm.WhatOpened, func(a *alarm.Alarm) { a.SymptomOf = "paris.core.icmp" }), nil, true, 0, false},
		{"becoming a symptom stops", change(alarm.WhatSymptom, func(a *alarm.Alarm) { a.SymptomOf = "paris.core.icmp" }), nil, true, 0, false},
		{"no longer a symptom pages", change(alarm.WhatSymptom, nil), []string{"pager", "chat", "mail"}, false, 1, false},
		{"in maintenance does not page", change(alarm.WhatOpened, func(a *alarm.Alarm) { a.Maintenance = "upgrade" }), nil, true, 0, false},
		{"a clear in maintenance is held", change(alarm.WhatCleared, func(a *alarm.Alarm) { a.State, a.Maintenance = alarm.StateCleared, "upgrade" }), nil, true, 0, false},
		{"maintenance beginning stops", change(alarm.WhatMaintenance, func(a *alarm.Alarm) { a.Maintenance = "upgrade" }), nil, true, 0, false},
		{"maintenance ending over an open alarm pages", change(alarm.WhatMaintenance, nil), []string{"pager", "chat", "mail"}, false, 1, false},
		{"maintenance ending over an acked alarm is quiet", change(alarm.WhatMaintenance, func(a *alarm.Alarm) { a.Acked = true }), nil, false, 0, false},
		{"maintenance ending over a cleared alarm is quiet", change(alarm.WhatMaintenance, func(a *alarm.Alarm) { a.State = alarm.StateCleared }), nil, false, 0, false},
		{"an acked alarm's severity pages without escalating", change(alarm.WhatSeverity, func(a *alarm.Alarm) { a.Acked = true }), []string{"pager", "chat", "mail"}, false, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := notify.Decide(tc.c, rules, now)
			var got []string
			for _, s := range d.Sends {
				got = append(got, s.Channel)
				if s.Item.ID != tc.c.MsgID() || s.Item.Late != tc.late || s.Item.Alarm.ID != tc.c.Alarm.ID {
					t.Errorf("item %+v", s.Item)
				}
			}
			if len(got) != len(tc.sends) {
				t.Fatalf("sends %v, want %v", got, tc.sends)
			}
			for i := range got {
				if got[i] != tc.sends[i] {
					t.Fatalf("sends %v, want %v", got, tc.sends)
				}
			}
			if d.Cancel != tc.cancel || len(d.Schedule) != tc.schedule {
				t.Fatalf("cancel %v schedule %d, want %v %d", d.Cancel, len(d.Schedule), tc.cancel, tc.schedule)
			}
			for _, p := range d.Schedule {
				if !p.Since.Equal(now) || p.Origin != tc.c.MsgID() || p.Step != 0 {
					t.Fatalf("pending %+v", p)
				}
			}
		})
	}
}

// TestDecideActions: a rule with Actions pages the NOC's acknowledgement,
// unacknowledgement and comment of its alarms, naming the user; rules
// without it stay quiet; a symptom's actions never page.
func TestDecideActions(t *testing.T) {
	now := time.Date(2026, 12, 3, 9, 0, 5, 0, time.UTC)
	rs := append(slices.Clone(rules), notify.Rule{Name: "noc", Sites: []string{"paris"}, Channels: []string{"noc-chat", "chat"}, Actions: true})
	by := func(c alarm.Change) alarm.Change { c.By = "alice"; return c }
	for _, tc := range []struct {
		name  string
		c     alarm.Change
		sends []string
	}{
		{"acked", by(change(alarm.WhatAcked, func(a *alarm.Alarm) { a.Acked, a.AckedBy = true, "alice" })), []string{"noc-chat", "chat"}},
		{"unacked", by(change(alarm.WhatUnacked, nil)), []string{"noc-chat", "chat"}},
		{"commented", by(change(alarm.WhatCommented, nil)), []string{"noc-chat", "chat"}},
		{"repeated", change(alarm.WhatRepeated, nil), nil},
		{"a symptom acked", by(change(alarm.WhatAcked, func(a *alarm.Alarm) { a.Acked, a.SymptomOf = true, "paris.core.icmp" })), nil},
		{"another site acked", by(change(alarm.WhatAcked, func(a *alarm.Alarm) { a.Site, a.Acked = "lyon", true })), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := notify.Decide(tc.c, rs, now)
			var got []string
			for _, s := range d.Sends {
				got = append(got, s.Channel)
				if s.Item.By != "alice" || s.Item.What != tc.c.What {
					t.Errorf("item %+v: want by alice, what %s", s.Item, tc.c.What)
				}
			}
			if !slices.Equal(got, tc.sends) {
				t.Fatalf("sends %v, want %v", got, tc.sends)
			}
		})
	}
	c := by(change(alarm.WhatCommented, func(a *alarm.Alarm) {
		a.Comments = []alarm.Comment{{By: "alice", At: now, Text: "fibre cut\nat the river"}}
	}))
	m := notify.Message{Items: []notify.Item{notify.Decide(c, rs, now).Sends[0].Item}}
	if !strings.Contains(m.Subject(), "commented by alice") || !strings.Contains(m.Text(), "comment by alice: fibre cut at the river") {
		t.Errorf("subject %q, text %q: want who commented and what", m.Subject(), m.Text())
	}
}

// TestEscalateOnAClock walks an escalation through a fake clock: nothing
// before the first step's time, the on-call at 10 minutes, the manager
// at 30, then done.
func TestEscalateOnAClock(t *testing.T) {
	start := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	clock := start
	d := notify.Decide(change(alarm.WhatOpened, nil), rules, clock)
	p := &d.Schedule[0]
	var sent []string
	for p != nil && clock.Before(start.Add(time.Hour)) {
		var s *notify.Send
		s, p = notify.Escalate(*p, rules[0], clock)
		if s != nil {
			sent = append(sent, clock.Sub(start).String()+" "+s.Channel+" "+s.Item.ID)
			if s.Item.What != notify.WhatEscalation {
				t.Fatalf("item %+v", s.Item)
			}
		}
		clock = clock.Add(time.Minute)
	}
	want := []string{"10m0s oncall paris.rtr1.icmp.4.e1", "30m0s manager paris.rtr1.icmp.4.e2"}
	if len(sent) != 2 || sent[0] != want[0] || sent[1] != want[1] || p != nil {
		t.Fatalf("sent %q (left %+v), want %q", sent, p, want)
	}
	// A step taken again (a runner that died before it recorded the
	// step) sends the same item: the outbox holds it once.
	q := d.Schedule[0]
	s1, _ := notify.Escalate(q, rules[0], start.Add(11*time.Minute))
	s2, _ := notify.Escalate(q, rules[0], start.Add(12*time.Minute))
	if s1.Item.ID != s2.Item.ID {
		t.Fatalf("the same step named %s and %s", s1.Item.ID, s2.Item.ID)
	}
}

func items(n int, late bool) []notify.Item {
	var out []notify.Item
	for i := range n {
		out = append(out, notify.Item{ID: string(rune('a' + i)), Late: late})
	}
	return out
}

func TestBatch(t *testing.T) {
	shape := func(ms []notify.Message) string {
		s := ""
		for _, m := range ms {
			for _, it := range m.Items {
				s += it.ID
			}
			if m.Reason != "" {
				s += "(" + m.Reason + ")"
			}
			s += " "
		}
		return s
	}
	for _, tc := range []struct {
		name      string
		items     []notify.Item
		tokens    int
		lateReady bool
		want      string
	}{
		{"no limit: one each", items(3, false), -1, false, "a b c "},
		{"within the limit", items(2, false), 2, false, "a b "},
		{"over the limit: the last token carries a summary", items(5, false), 3, false, "a b cde(rate_limit) "},
		{"one token: all in one summary", items(4, false), 1, false, "abcd(rate_limit) "},
		{"no token: all wait", items(4, false), 0, false, ""},
		{"late wait for the catch-up", items(3, true), -1, false, ""},
		{"late go as one", items(3, true), -1, true, "abc(late) "},
		{"late take a token first", append(items(2, true), notify.Item{ID: "z"}), 1, true, "ab(late) "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := shape(notify.Batch(tc.items, tc.tokens, tc.lateReady)); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestBucket(t *testing.T) {
	now := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	b := notify.NewBucket(notify.Channel{RatePerMinute: 6, Burst: 3}) // one every 10 s
	for i := range 3 {
		if !b.Take(now) {
			t.Fatalf("take %d of the burst refused", i+1)
		}
	}
	if b.Take(now.Add(9 * time.Second)) {
		t.Fatal("a token before 10 s")
	}
	if !b.Take(now.Add(10 * time.Second)) {
		t.Fatal("no token after 10 s")
	}
	if n := b.Tokens(now.Add(time.Hour)); n != 3 {
		t.Fatalf("%d tokens after an hour, want the burst, 3", n)
	}
	if n := notify.NewBucket(notify.Channel{}).Tokens(now); n != -1 {
		t.Fatalf("no limit: %d tokens, want -1", n)
	}
}

// TestDecideSettle: the pages of a correlatable alarm (an unreachable
// alarm of a device with a parent) are held for the rule's settle time,
// and its clear goes only if none of them is still held; other alarms,
// and the NOC's actions, are not held.
func TestDecideSettle(t *testing.T) {
	now := time.Date(2026, 12, 3, 9, 0, 5, 0, time.UTC)
	rs := []notify.Rule{
		{Name: "a", Channels: []string{"pager"}, Actions: true},
		{Name: "b", Channels: []string{"chat"}, Settle: 5 * time.Second},
	}
	child := func(a *alarm.Alarm) { a.Device, a.ID, a.Parent = "sw7", "paris.sw7.icmp", "rtr1" }
	type want struct {
		hold    []time.Duration // per send, from now (-1: not held)
		ifPaged bool
	}
	for _, tc := range []struct {
		name string
		c    alarm.Change
		want want
	}{
		{"a child's opening is held", change(alarm.WhatOpened, child), want{hold: []time.Duration{notify.DefaultSettle, 5 * time.Second}}},
		{"a child's snmp alarm too", change(alarm.WhatOpened, func(a *alarm.Alarm) { child(a); a.Check, a.ID = "snmp", "paris.sw7.snmp" }), want{hold: []time.Duration{notify.DefaultSettle, 5 * time.Second}}},
		{"a child's severity change is held", change(alarm.WhatSeverity, child), want{hold: []time.Duration{notify.DefaultSettle, 5 * time.Second}}},
		{"the end of a child's symptom is held", change(alarm.WhatSymptom, child), want{hold: []time.Duration{notify.DefaultSettle, 5 * time.Second}}},
		{"the end of a window over a child is held", change(alarm.WhatMaintenance, child), want{hold: []time.Duration{notify.DefaultSettle, 5 * time.Second}}},
		{"a child's clear goes if it paged", change(alarm.WhatCleared, func(a *alarm.Alarm) { child(a); a.State = alarm.StateCleared }), want{hold: []time.Duration{-1, -1}, ifPaged: true}},
		{"an ack of a child is not held", change(alarm.WhatAcked, func(a *alarm.Alarm) { child(a); a.Acked = true }), want{hold: []time.Duration{-1}}},
		{"a device without a parent pages at once", change(alarm.WhatOpened, nil), want{hold: []time.Duration{-1, -1}}},
		{"a child's interface alarm pages at once", change(alarm.WhatOpened, func(a *alarm.Alarm) { child(a); a.Check, a.ID = "if.2", "paris.sw7.if_2" }), want{hold: []time.Duration{-1, -1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := notify.Decide(tc.c, rs, now)
			if len(d.Sends) != len(tc.want.hold) {
				t.Fatalf("sends %+v, want %d", d.Sends, len(tc.want.hold))
			}
			for i, s := range d.Sends {
				var got time.Duration = -1
				if !s.HoldUntil.IsZero() {
					got = s.HoldUntil.Sub(now)
				}
				if got != tc.want.hold[i] || s.IfPaged != tc.want.ifPaged {
					t.Errorf("send to %s: held %s if paged %v, want %s %v", s.Channel, got, s.IfPaged, tc.want.hold[i], tc.want.ifPaged)
				}
			}
		})
	}
	bad := notify.Rule{Name: "x", Channels: []string{"pager"}, Settle: 2 * time.Hour}
	if err := bad.Validate(nil); err == nil {
		t.Fatal("a settle time of 2h is valid")
	}
}

// TestEscalationOfAHeldPage: the escalation of a correlatable alarm, whose
// page is held for the rule's settle time, counts from the end of that
// time, when the page goes; other escalations count from the change. With
// a settle time of 30 s and a step after 1 min, the step's channel is
// paged 1 min after the first page (90 s after the change), not 30 s
// after it.
func TestEscalationOfAHeldPage(t *testing.T) {
	now := time.Date(2026, 12, 3, 9, 0, 5, 0, time.UTC)
	esc := []notify.Step{{After: time.Minute, Channel: "oncall"}}
	rs := []notify.Rule{
		{Name: "a", Channels: []string{"pager"}, Settle: 30 * time.Second, Escalation: esc},
		{Name: "b", Channels: []string{"chat"}, Escalation: esc}, // the default settle time
	}
	child := func(a *alarm.Alarm) { a.Device, a.ID, a.Parent = "sw7", "paris.sw7.icmp", "rtr1" }
	for _, tc := range []struct {
		name  string
		c     alarm.Change
		since []time.Duration // per rule, from now
	}{
		{"a child's opening", change(alarm.WhatOpened, child), []time.Duration{30 * time.Second, notify.DefaultSettle}},
		{"a child's severity change", change(alarm.WhatSeverity, child), []time.Duration{30 * time.Second, notify.DefaultSettle}},
		{"the end of a child's symptom", change(alarm.WhatSymptom, child), []time.Duration{30 * time.Second, notify.DefaultSettle}},
		{"the end of a window over a child", change(alarm.WhatMaintenance, child), []time.Duration{30 * time.Second, notify.DefaultSettle}},
		{"a child unacked: nothing is paged, nothing held", change(alarm.WhatUnacked, child), []time.Duration{0, 0}},
		{"a device without a parent", change(alarm.WhatOpened, nil), []time.Duration{0, 0}},
		{"a child's interface alarm", change(alarm.WhatOpened, func(a *alarm.Alarm) { child(a); a.Check, a.ID = "if.2", "paris.sw7.if_2" }), []time.Duration{0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := notify.Decide(tc.c, rs, now)
			if len(d.Schedule) != len(tc.since) {
				t.Fatalf("schedule %+v, want %d", d.Schedule, len(tc.since))
			}
			for i, p := range d.Schedule {
				if got := p.Since.Sub(now); got != tc.since[i] {
					t.Errorf("rule %s: since %s, want %s", p.Rule, got, tc.since[i])
				}
				// Held or not, its page goes at Since and the step a minute
				// later, not before.
				for _, at := range []time.Duration{0, time.Minute - time.Second} {
					if s, rest := notify.Escalate(p, rs[i], p.Since.Add(at)); s != nil || rest == nil {
						t.Errorf("rule %s: escalated %s after its page", p.Rule, at)
					}
				}
				s, rest := notify.Escalate(p, rs[i], p.Since.Add(time.Minute))
				if s == nil || rest != nil || s.Channel != "oncall" || !s.Item.At.Equal(p.Since.Add(time.Minute)) {
					t.Errorf("rule %s: a minute after its page: %+v, rest %+v", p.Rule, s, rest)
				}
			}
		})
	}
}
