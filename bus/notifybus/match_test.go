package notifybus_test

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/meshmon/meshmon/alarm"
	"github.com/meshmon/meshmon/notify"
)

// TestRunRuleForADeviceAndKind: a rule restricted to one device and one
// kind pages its channel for that device's alarms of that kind only,
// their openings and clears; a rule for everything, on another channel,
// shows that the other alarms were there and paged.
func TestRunRuleForADeviceAndKind(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	links, all := newReceiver(t, "links-key"), newReceiver(t, "all-key")
	e.webhook(t, "links", links.srv.URL, "links-key", 0, 0)
	e.webhook(t, "all", all.srv.URL, "all-key", 0, 0)
	e.rule(t, notify.Rule{Name: "sw7-links", Devices: []string{"sw7"}, Kinds: []string{"if_down"}, Channels: []string{"links"}})
	e.rule(t, notify.Rule{Name: "everything", Channels: []string{"all"}})
	e.run(t, testConfig())

	now := time.Now().UTC()
	open := func(device, check, kind, severity string) alarm.Change {
		a := alarm.Alarm{ID: alarm.ID("paris", device, check), Tenant: "acme", Site: "paris", Device: device, Check: check, Kind: kind,
			Severity: severity, State: alarm.StateOpen, Message: kind + " " + device, Count: 1, FirstSeen: now, LastSeen: now, Opened: 1, Seq: 1}
		return alarm.Change{What: alarm.WhatOpened, At: now, Alarm: a}
	}
	opens := []alarm.Change{
		open("sw7", "if.2", "if_down", "major"),
		open("sw7", "icmp", "node_down", "critical"),
		open("sw8", "if.2", "if_down", "major"),
		open("core1", "snmp", "snmp_unreachable", "critical"),
	}
	var changes []alarm.Change
	for _, c := range opens {
		changes = append(changes, c, next(c, alarm.WhatCleared, func(a *alarm.Alarm) { a.State, a.ClearedAt = alarm.StateCleared, now }))
	}
	for _, c := range changes {
		e.publish(t, c)
	}
	e.waitApplied(t)
	e.waitOutboxEmpty(t)

	_, got, _, bad := links.snapshot()
	want := []string{changes[0].MsgID(), changes[1].MsgID()}
	if ids := slices.Sorted(maps.Keys(got)); !slices.Equal(ids, want) || bad != 0 {
		t.Fatalf("the sw7 if_down rule's channel got %v (%d badly signed), want %v: sw7's interface alarm opened and cleared only", got, bad, want)
	}
	for id, n := range got {
		if n != 1 {
			t.Errorf("item %s paged %d times", id, n)
		}
	}
	_, everything, _, _ := all.snapshot()
	if len(everything) != len(changes) {
		t.Fatalf("the rule for everything paged %d items, want %d: %v", len(everything), len(changes), everything)
	}
}
