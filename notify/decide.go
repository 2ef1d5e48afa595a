package notify

import (
	"slices"
	"strconv"
	"time"

	"github.com/meshmon/meshmon/alarm"
)

// Item is one notification of one alarm change (or of one escalation
// step) to one channel: what a message says, alone or in a summary.
type Item struct {
	// ID names the item once per channel: the change's MsgID, with
	// ".e<step>" for an escalation step.
	ID   string `json:"id"`
	What string `json:"what"` // the change's What, or "escalation"
	// Step is the escalation step (1 for the first), for an escalation.
	Step int    `json:"step,omitempty"`
	Rule string `json:"rule"`
	// By is the user of a NOC action (acked, unacked, commented, a clear
	// by hand), as the server proved it.
	By   string    `json:"by,omitempty"`
	Late bool      `json:"late,omitempty"`
	At   time.Time `json:"at"`
	// Alarm is the alarm as the change left it.
	Alarm alarm.Alarm `json:"alarm"`
}

// WhatEscalation is an Item's What for an escalation step.
const WhatEscalation = "escalation"

// Send is one item to deliver on a channel.
type Send struct {
	Channel string
	Item    Item
	// HoldUntil, when set, holds a page of a correlatable alarm back
	// until then (the rule's settle time): the runner then reads the
	// alarm again and sends the page only if it is still open, not a
	// symptom and not in maintenance.
	HoldUntil time.Time
	// IfPaged is set on the clear of a correlatable alarm: when a page of
	// the same opening is still held back on the channel, neither goes
	// (the alarm cleared before it settled, and never paged).
	IfPaged bool
}

// Decision is what one alarm change calls for.
type Decision struct {
	Sends []Send // one per channel at most
	// Cancel stops the alarm's pending escalations (before Schedule
	// starts new ones).
	Cancel   bool
	Schedule []Pending
}

// Decide is what a change calls for under rules at now:
//
//   - opened and severity page the rules' channels, and start the rules'
//     escalations (unless the alarm is acknowledged); cleared pages and
//     stops the escalations;
//   - acked stops the escalations; unacked starts them again from now;
//   - symptom: becoming a symptom stops the escalations; ceasing to be one
//     while open pages like an opening;
//   - maintenance: a window beginning stops the escalations; one ending
//     over an alarm still open and unacknowledged pages it then (what was
//     held);
//   - repeated and commented call for nothing;
//   - acked, unacked and commented page the channels of the rules that
//     ask for the NOC's actions (Rule.Actions).
//
// A correlatable alarm (Alarm.Correlatable: an unreachable alarm of a
// device with a parent) may become a symptom after it opened, when its
// parent's alarm comes later, and may clear just after it stopped being
// one, when the parent recovered first. So its pages (an opening, a
// severity change, the end of a symptom or of a maintenance window) are
// held for the rule's settle time (HoldUntil), and its clear goes only if
// no page of that opening is still held (IfPaged). Its escalation counts
// from the end of the settle time, when the held page goes: with a settle
// time of 30 s and a first step after 1 min, the step's channel is paged
// a minute after the first page, not 30 s after it. A held page that is
// withdrawn instead (the alarm cleared, became a symptom or went into
// maintenance within the settle time) does not escalate: each of those
// changes stops the escalation (Cancel) before its first step is due, and
// the runner escalates only once it has applied every change.
//
// A symptom, or an alarm in a maintenance window, never pages. A late
// change's items carry Late: they are summarised, not paged one by one.
func Decide(c alarm.Change, rules []Rule, now time.Time) Decision {
	a := c.Alarm
	open := a.State == alarm.StateOpen
	held := a.SymptomOf != "" || a.Maintenance != ""
	var d Decision
	page, escalate, action := false, false, false
	switch c.What {
	case alarm.WhatOpened, alarm.WhatSeverity:
		page, escalate = open, open
	case alarm.WhatCleared:
		page, d.Cancel = true, true
	case alarm.WhatAcked:
		d.Cancel, action = true, true
	case alarm.WhatUnacked:
		d.Cancel, escalate, action = true, open, true
	case alarm.WhatCommented:
		action = true
	case alarm.WhatSymptom:
		d.Cancel = a.SymptomOf != ""
		page, escalate = open && a.SymptomOf == "", open && a.SymptomOf == ""
	case alarm.WhatMaintenance:
		d.Cancel = a.Maintenance != ""
		page, escalate = open && !a.Acked && a.Maintenance == "", open && a.Maintenance == ""
	}
	if held {
		d.Cancel = d.Cancel || c.What != alarm.WhatRepeated && c.What != alarm.WhatCommented
		return d
	}
	escalate = escalate && !a.Acked
	for _, r := range rules {
		if !r.Matches(a) {
			continue
		}
		if page || action && r.Actions {
			for _, ch := range r.Channels {
				if slices.ContainsFunc(d.Sends, func(s Send) bool { return s.Channel == ch }) {
					continue
				}
				s := Send{Channel: ch, Item: Item{ID: c.MsgID(), What: c.What, Rule: r.Name, By: c.By, Late: c.Late, At: c.At, Alarm: a}}
				switch {
				case !page || !a.Correlatable():
				case c.What == alarm.WhatCleared:
					s.IfPaged = true
				default:
					s.HoldUntil = now.Add(r.SettleTime())
				}
				d.Sends = append(d.Sends, s)
			}
		}
		if escalate && len(r.Escalation) > 0 {
			since := now
			if page && a.Correlatable() {
				// Its page is held: the steps count from its release.
				since = now.Add(r.SettleTime())
			}
			d.Schedule = append(d.Schedule, Pending{AlarmID: a.ID, Rule: r.Name, Opened: a.Opened, Origin: c.MsgID(), Since: since, Alarm: a})
		}
	}
	return d
}

// Pending is an alarm's escalation under one rule: the steps not taken
// yet, counted from Since.
type Pending struct {
	AlarmID string `json:"alarm_id"`
	Rule    string `json:"rule"`
	Opened  int    `json:"opened"` // the alarm's Opened when it started
	Origin  string `json:"origin"` // the MsgID of the change that started it
	// Since is when the change that started it paged: the change, or,
	// for a page held for the rule's settle time, the end of that time.
	Since time.Time   `json:"since"`
	Step  int         `json:"step"` // steps taken so far
	Alarm alarm.Alarm `json:"alarm"`
}

// Key is the pending escalation's key: the alarm's ID and the rule.
func (p Pending) Key() string { return p.AlarmID + "." + p.Rule }

// Escalate takes the escalation's next step under r if it is due at now:
// it returns what to send (nil when nothing is due) and what remains
// (nil when no step is left: the escalation is done).
func Escalate(p Pending, r Rule, now time.Time) (*Send, *Pending) {
	if p.Step >= len(r.Escalation) {
		return nil, nil
	}
	st := r.Escalation[p.Step]
	if now.Before(p.Since.Add(st.After)) {
		return nil, &p
	}
	s := &Send{Channel: st.Channel, Item: Item{
		ID: p.Origin + ".e" + strconv.Itoa(p.Step+1), What: WhatEscalation, Step: p.Step + 1,
		Rule: r.Name, At: p.Since.Add(st.After), Alarm: p.Alarm,
	}}
	p.Step++
	if p.Step >= len(r.Escalation) {
		return s, nil
	}
	return s, &p
}

// Next is when the escalation's next step is due under r (zero when none
// is left).
func (p Pending) Next(r Rule) time.Time {
	if p.Step >= len(r.Escalation) {
		return time.Time{}
	}
	return p.Since.Add(r.Escalation[p.Step].After)
}

// Reasons a message summarises several items.
const (
	ReasonLate      = "late"       // changes applied late: a site catching up after a link cut
	ReasonRateLimit = "rate_limit" // more than the channel's rate limit let through
)

// Message is what one delivery carries: one item, or a summary of several.
type Message struct {
	Items  []Item `json:"items"`
	Reason string `json:"reason,omitempty"` // set on a summary
}

// Batch makes the messages a channel sends now of its waiting items,
// oldest first, with tokens messages allowed by its rate limit (-1: no
// limit). Late items go together in one summary, and only when lateReady
// (the catch-up is over, or has lasted long enough). Of the others, when
// more wait than the tokens allow, all but the last token go one item
// each and the last carries a summary of the rest. Nothing is left out
// but what waits for a token (or, late, for lateReady).
func Batch(items []Item, tokens int, lateReady bool) []Message {
	var late, now []Item
	for _, it := range items {
		if it.Late {
			late = append(late, it)
		} else {
			now = append(now, it)
		}
	}
	var out []Message
	if len(late) > 0 && lateReady && tokens != 0 {
		out = append(out, Message{Items: late, Reason: ReasonLate})
		tokens--
	}
	if tokens < 0 || len(now) <= tokens {
		for _, it := range now {
			out = append(out, Message{Items: []Item{it}})
		}
		return out
	}
	if tokens == 0 {
		return out
	}
	for _, it := range now[:tokens-1] {
		out = append(out, Message{Items: []Item{it}})
	}
	rest := now[tokens-1:]
	if len(rest) == 1 {
		return append(out, Message{Items: rest})
	}
	return append(out, Message{Items: rest, Reason: ReasonRateLimit})
}

// Bucket is a channel's token bucket: Rate tokens a second, at most
// Burst at once. The zero Rate is no limit. Not safe for concurrent use.
type Bucket struct {
	Rate   float64
	Burst  float64
	tokens float64
	last   time.Time
}

// NewBucket is a full bucket for a channel's limit.
func NewBucket(ch Channel) *Bucket {
	return &Bucket{Rate: ch.RatePerMinute / 60, Burst: float64(ch.Burst), tokens: float64(ch.Burst)}
}

// Tokens is how many whole tokens the bucket holds at now (-1: no limit).
func (b *Bucket) Tokens(now time.Time) int {
	if b.Rate <= 0 {
		return -1
	}
	if !b.last.IsZero() && now.After(b.last) {
		b.tokens = min(b.Burst, b.tokens+now.Sub(b.last).Seconds()*b.Rate)
	}
	b.last = now
	return int(b.tokens)
}

// Take spends one token at now; it reports false when none is left.
func (b *Bucket) Take(now time.Time) bool {
	n := b.Tokens(now)
	if n < 0 {
		return true
	}
	if n == 0 {
		return false
	}
	b.tokens--
	return true
}
