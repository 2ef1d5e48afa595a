package alarm

import (
	"slices"
	"strings"
	"time"

	"github.com/meshmon/meshmon"
)

// DefaultLateAfter is how long after its time an event may be applied
// before the changes it makes are Late (a site catching up after its link
// to central was cut), when a Set says nothing else.
const DefaultLateAfter = time.Minute

// Set is one tenant's alarms and what folding events into them needs: the
// state machine of the alarms. It is pure (no I/O, no clock: every method
// is given the time) and deterministic, so that a processor that applies
// the same events to the same alarms makes the same changes, with the same
// MsgIDs. It is not safe for concurrent use: one goroutine (the tenant's
// processor) owns it.
type Set struct {
	// LateAfter is how long after its time an event may be applied
	// before the changes it makes are Late; 0 is DefaultLateAfter.
	LateAfter time.Duration

	tenant  string
	alarms  map[string]*Alarm
	windows []Window
	// kids indexes the alarms by their device's parent: "<site>.<parent>"
	// -> IDs of the alarms that name it.
	kids map[string]map[string]struct{}
}

// NewSet returns an empty set of the tenant's alarms.
func NewSet(tenant string) *Set {
	return &Set{tenant: tenant, alarms: map[string]*Alarm{}, kids: map[string]map[string]struct{}{}}
}

// Load puts an alarm as read back from the bucket or the ALARMS stream;
// of two copies of one alarm the one with the higher Seq stays (the bucket
// is written after the stream, so after a crash the stream may be ahead).
func (s *Set) Load(a Alarm) {
	cur, ok := s.alarms[a.ID]
	if ok && cur.Seq >= a.Seq {
		return
	}
	if ok {
		s.setParent(cur, "")
	}
	parent := a.Parent
	a.Parent = ""
	s.setParent(&a, parent)
	s.alarms[a.ID] = &a
}

// setParent sets a's Parent, and the index of the alarms by parent.
func (s *Set) setParent(a *Alarm, parent string) {
	if a.Parent == parent {
		return
	}
	if a.Parent != "" {
		delete(s.kids[a.Site+"."+a.Parent], a.ID)
	}
	a.Parent = parent
	if parent != "" {
		k := a.Site + "." + parent
		if s.kids[k] == nil {
			s.kids[k] = map[string]struct{}{}
		}
		s.kids[k][a.ID] = struct{}{}
	}
}

// Get returns a copy of the alarm with id.
func (s *Set) Get(id string) (Alarm, bool) {
	a, ok := s.alarms[id]
	if !ok {
		return Alarm{}, false
	}
	return a.clone(), true
}

// Len is how many alarms the set holds, open or cleared.
func (s *Set) Len() int { return len(s.alarms) }

// All returns a copy of every alarm, by ID.
func (s *Set) All() []Alarm {
	out := make([]Alarm, 0, len(s.alarms))
	for _, a := range s.alarms {
		out = append(out, a.clone())
	}
	slices.SortFunc(out, func(a, b Alarm) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Rewind lowers to seq the EventSeq of every alarm above it, and returns
// a copy of each it lowered. The processor calls it when central's EVENTS
// lost the events after seq that it had applied: the stream numbers what
// it stores next from there again, which Apply would otherwise take for
// events already applied.
func (s *Set) Rewind(seq uint64) []Alarm {
	var out []Alarm
	for _, a := range s.alarms {
		if a.EventSeq > seq {
			a.EventSeq = seq
			out = append(out, a.clone())
		}
	}
	slices.SortFunc(out, func(a, b Alarm) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Applied is the highest EventSeq of any alarm: every event after it is
// yet to be applied, and some at it or before may be (an event whose
// changes were published in part before a crash).
func (s *Set) Applied() uint64 {
	var m uint64
	for _, a := range s.alarms {
		m = max(m, a.EventSeq)
	}
	return m
}

// SetWindows replaces the maintenance windows. Alarms pick them up at
// their next change, or at Tick. They are kept by ID, so that of two
// windows over an alarm it carries the same one (the first by ID) however
// they were handed over: the processor reads them from a map, and a
// window ID that flipped would be a maintenance change that is none.
func (s *Set) SetWindows(ws []Window) {
	s.windows = slices.Clone(ws)
	slices.SortStableFunc(s.windows, func(a, b Window) int { return strings.Compare(a.ID, b.ID) })
}

// Windows returns the maintenance windows, by ID.
func (s *Set) Windows() []Window { return slices.Clone(s.windows) }

// Apply folds one event, at sequence seq of the tenant's EVENTS stream at
// central, into the alarms, at time now, and returns the changes it made,
// in order. Failure kinds open the alarm of their check, or repeat it;
// recoveries clear it; a device whose node_down opens or clears makes its
// children's unreachable alarms symptoms of it, or no longer.
//
// Apply is idempotent by seq: an event at or before the EventSeq of its
// alarm changes that alarm no more, so a processor that resumes after a
// crash from before its last event applies it again without opening
// anything twice. The correlation of the device's children is level
// triggered (made true again, whatever it was), so the changes of an event
// published in part before a crash are completed.
func (s *Set) Apply(ev meshmon.Event, seq uint64, now time.Time) []Change {
	d := ev.Data
	r := classify(d)
	if r.op == opNone || r.check == "" {
		return nil
	}
	id := ID(d.Site, d.Device, r.check)
	lateAfter := s.LateAfter
	if lateAfter <= 0 {
		lateAfter = DefaultLateAfter
	}
	late := now.Sub(ev.Time) > lateAfter
	var out []Change
	a := s.alarms[id]
	if a == nil || a.EventSeq < seq {
		switch r.op {
		case opOpen:
			out = s.fail(ev, r, id, seq)
		case opClear:
			out = s.recover(ev, id, seq)
		}
	}
	if r.check == meshmon.CheckICMP {
		out = append(out, s.correlateChildren(d.Site, d.Device, ev.Time, seq)...)
	}
	for i := range out {
		out[i].Late = late
	}
	return out
}

// fail applies a failure event to the alarm id: it opens (again) or
// repeats.
func (s *Set) fail(ev meshmon.Event, r rule, id string, seq uint64) []Change {
	d := ev.Data
	a := s.alarms[id]
	what := WhatRepeated
	switch {
	case a == nil:
		a = &Alarm{ID: id, Tenant: s.tenant, Site: d.Site, Device: d.Device, Check: r.check}
		s.alarms[id] = a
		fallthrough
	case a.State != StateOpen:
		what = WhatOpened
		a.State, a.Kind, a.Count, a.FirstSeen, a.Opened = StateOpen, d.Kind, 0, ev.Time, a.Opened+1
		a.ClearedAt, a.ClearedBy, a.SymptomOf = time.Time{}, "", ""
		a.Acked, a.AckedBy, a.AckedAt = false, "", time.Time{}
	case r.severity != a.Severity:
		what = WhatSeverity
	}
	a.Count++
	a.LastSeen, a.Message, a.Severity = ev.Time, d.Message, r.severity
	s.setParent(a, d.Parent)
	a.Maintenance = s.windowAt(a.Site, a.Device, ev.Time)
	if correlated(a.Check) {
		a.SymptomOf = s.parentAlarm(a)
	}
	return []Change{s.change(a, what, "", ev.Time, seq)}
}

// recover applies a recovery event to the alarm id: an open alarm clears.
func (s *Set) recover(ev meshmon.Event, id string, seq uint64) []Change {
	a := s.alarms[id]
	if a == nil || a.State != StateOpen {
		return nil
	}
	a.State, a.ClearedAt, a.ClearedBy = StateCleared, ev.Time, ""
	return []Change{s.change(a, WhatCleared, "", ev.Time, seq)}
}

// change records a change of a: its Seq moves on (and its EventSeq, for a
// change an event made: seq > 0).
func (s *Set) change(a *Alarm, what, by string, at time.Time, seq uint64) Change {
	a.Seq++
	if seq > 0 {
		a.EventSeq = max(a.EventSeq, seq)
	}
	return Change{What: what, By: by, At: at, Alarm: a.clone()}
}

// parentAlarm returns the ID of the open ICMP alarm of a's parent, or "".
func (s *Set) parentAlarm(a *Alarm) string {
	if a.Parent == "" {
		return ""
	}
	pid := ID(a.Site, a.Parent, meshmon.CheckICMP)
	if p, ok := s.alarms[pid]; ok && p.State == StateOpen {
		return pid
	}
	return ""
}

// correlateChildren makes the open unreachable alarms of device's children
// symptoms of device's open ICMP alarm, or no longer when it is not open,
// and returns the changes. The children are visited in ID order, so the
// changes (and their MsgIDs) are the same each time.
func (s *Set) correlateChildren(site, device string, at time.Time, seq uint64) []Change {
	var kids []*Alarm
	for id := range s.kids[site+"."+device] {
		if a := s.alarms[id]; a.State == StateOpen && correlated(a.Check) {
			kids = append(kids, a)
		}
	}
	slices.SortFunc(kids, func(a, b *Alarm) int { return strings.Compare(a.ID, b.ID) })
	var out []Change
	for _, a := range kids {
		want := s.parentAlarm(a)
		if a.SymptomOf == want {
			continue
		}
		a.SymptomOf = want
		out = append(out, s.change(a, WhatSymptom, "", at, seq))
	}
	return out
}

// clone copies a, with its own comments.
func (a *Alarm) clone() Alarm {
	c := *a
	c.Comments = slices.Clone(a.Comments)
	return c
}
