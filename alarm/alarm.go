// Package alarm is central's view of what is wrong now: alarms opened by
// failure events and cleared by their recoveries, deduplicated, correlated
// with a device's parent, acknowledged and commented by a NOC, held in
// maintenance windows. It is pure (no NATS): the bus side derives the
// state from each tenant's EVENTS stream and keeps it in JetStream.
//
// This file is the contract the rest of the mesh builds on: the alarm as
// the `alarms` bucket holds it and the console shows it, and the change as
// the ALARMS stream carries it to notifications.
package alarm

import (
	"strconv"
	"time"
)

// States of an alarm.
const (
	StateOpen    = "open"    // the failure holds
	StateCleared = "cleared" // its recovery arrived, or a NOC cleared it
	StateAll     = "all"     // in a Filter: open and cleared, as ""
)

// What a Change records.
const (
	WhatOpened      = "opened"      // a failure event opened the alarm
	WhatRepeated    = "repeated"    // the same failure again: Count and LastSeen moved
	WhatSeverity    = "severity"    // the severity changed
	WhatCleared     = "cleared"     // the recovery arrived, or a NOC cleared it (By set)
	WhatAcked       = "acked"       // a NOC acknowledged it
	WhatUnacked     = "unacked"     // the acknowledgement was withdrawn
	WhatCommented   = "commented"   // a NOC commented
	WhatSymptom     = "symptom"     // it became (or stopped being) a symptom of its parent's alarm
	WhatMaintenance = "maintenance" // a maintenance window began or ended over it
)

// Alarm is one alarm: keyed by tenant, site, device and check, so repeats of
// the same failure update it instead of opening another.
type Alarm struct {
	// ID is the alarm's key: "<site>.<device>.<check>" with the check's
	// dots as "_" ("if.2" -> "if_2"), so it is a valid KV key and subject
	// tail. It is stable for the life of the device and check; a cleared
	// alarm that opens again keeps its ID and bumps Opened.
	ID     string `json:"id"`
	Tenant string `json:"tenant"`
	Site   string `json:"site"`
	Device string `json:"device"`
	Check  string `json:"check"`
	// Kind is the event kind that opened it (node_down, if_down, ...).
	Kind     string `json:"kind"`
	Severity string `json:"severity"` // meshmon.Severity* of the latest failure event
	State    string `json:"state"`    // StateOpen or StateCleared
	Message  string `json:"message"`  // the latest failure event's message

	Count     int       `json:"count"`      // failure events folded into it since it opened
	FirstSeen time.Time `json:"first_seen"` // when it opened (the event's time)
	LastSeen  time.Time `json:"last_seen"`  // the latest failure event's time
	ClearedAt time.Time `json:"cleared_at,omitzero"`
	ClearedBy string    `json:"cleared_by,omitempty"` // a NOC user who cleared it by hand; "" for a recovery event
	Opened    int       `json:"opened"`               // how many times it opened (1 for the first)

	Acked   bool      `json:"acked"`
	AckedBy string    `json:"acked_by,omitempty"`
	AckedAt time.Time `json:"acked_at,omitzero"`

	Comments []Comment `json:"comments,omitempty"`

	// Parent is the device's parent (meshmon.Device.Parent) as the latest
	// failure event gave it: its open ICMP alarm makes this one a symptom.
	Parent string `json:"parent,omitempty"`
	// SymptomOf is the ID of the parent's open alarm this one is a symptom
	// of; a symptom does not page.
	SymptomOf string `json:"symptom_of,omitempty"`
	// Maintenance names the maintenance window it is in, if any; its
	// notifications are held.
	Maintenance string `json:"maintenance,omitempty"`

	// Seq counts the alarm's changes (1 for the first); with ID it names
	// each change once (Change.MsgID).
	Seq uint64 `json:"seq"`
	// EventSeq is the sequence, in the tenant's EVENTS stream at central,
	// of the last event applied to it.
	EventSeq uint64 `json:"event_seq,omitempty"`
}

// Comment is a NOC's note on an alarm.
type Comment struct {
	By   string    `json:"by"`
	At   time.Time `json:"at"`
	Text string    `json:"text"`
}

// Change is one change of an alarm, as the ALARMS stream carries it on
// ChangeSubject: the alarm after the change, and what changed.
type Change struct {
	What string    `json:"what"`         // one of the What* constants
	By   string    `json:"by,omitempty"` // the NOC user, for acked, unacked, commented and a manual clear
	At   time.Time `json:"at"`
	// Late is set on a change an event made when it was applied more than
	// a minute after its time: a site catching up after a link cut.
	// Notifications summarise late changes instead of paging each.
	Late  bool  `json:"late,omitempty"`
	Alarm Alarm `json:"alarm"`
}

// MsgID is the change's Nats-Msg-Id: the alarm's ID and its Seq, so a
// change published again after a failover is stored once.
func (c Change) MsgID() string { return c.Alarm.ID + "." + strconv.FormatUint(c.Alarm.Seq, 10) }

// Stream and bucket names, in each tenant's account at central.
const (
	Stream = "ALARMS" // subjects alarm.>: every Change, limits retention
	Bucket = "alarms" // key Alarm.ID: the alarm's current state (JSON)
)

// ChangeSubject is the subject of an alarm's changes:
// alarm.<site>.<device>.<check with dots as "_">.
func ChangeSubject(a Alarm) string { return "alarm." + a.ID }

// ID returns the ID of the alarm of a device's check.
func ID(site, device, check string) string {
	b := []byte(check)
	for i, c := range b {
		if c == '.' {
			b[i] = '_'
		}
	}
	return site + "." + device + "." + string(b)
}
