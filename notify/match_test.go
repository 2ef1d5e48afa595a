package notify_test

import (
	"testing"

	"github.com/meshmon/meshmon/alarm"
	"github.com/meshmon/meshmon/notify"
)

// TestRuleMatches: a rule matches an alarm when each of its lists
// (severity, site, device, kind) is empty or holds the alarm's value;
// the lists are ANDed, the values within one ORed.
func TestRuleMatches(t *testing.T) {
	a := alarm.Alarm{ID: "paris.sw7.if_2", Site: "paris", Device: "sw7", Check: "if.2", Kind: "if_down", Severity: "major", State: alarm.StateOpen}
	for _, tc := range []struct {
		name string
		rule notify.Rule
		want bool
	}{
		{"no list matches any alarm", notify.Rule{}, true},
		{"its severity", notify.Rule{Severities: []string{"major"}}, true},
		{"another severity", notify.Rule{Severities: []string{"critical"}}, false},
		{"one of its severities", notify.Rule{Severities: []string{"critical", "major"}}, true},
		{"its site", notify.Rule{Sites: []string{"paris"}}, true},
		{"another site", notify.Rule{Sites: []string{"lyon"}}, false},
		{"its device", notify.Rule{Devices: []string{"sw7"}}, true},
		{"another device", notify.Rule{Devices: []string{"sw8"}}, false},
		{"one of its devices", notify.Rule{Devices: []string{"core1", "sw7"}}, true},
		{"its device at one of its sites", notify.Rule{Devices: []string{"sw7"}, Sites: []string{"paris", "lyon"}}, true},
		{"its kind", notify.Rule{Kinds: []string{"if_down"}}, true},
		{"another kind", notify.Rule{Kinds: []string{"node_down"}}, false},
		{"the kind is the opening event's, not the check", notify.Rule{Kinds: []string{"if.2"}}, false},
		{"one of its kinds", notify.Rule{Kinds: []string{"node_down", "if_down"}}, true},
		{"device and kind", notify.Rule{Devices: []string{"sw7"}, Kinds: []string{"if_down"}}, true},
		{"its device, another kind", notify.Rule{Devices: []string{"sw7"}, Kinds: []string{"node_down"}}, false},
		{"its kind, another device", notify.Rule{Devices: []string{"sw8"}, Kinds: []string{"if_down"}}, false},
		{"every list matches", notify.Rule{Severities: []string{"major"}, Sites: []string{"paris"}, Devices: []string{"sw7"}, Kinds: []string{"if_down"}}, true},
		{"every list but the site", notify.Rule{Severities: []string{"major"}, Sites: []string{"lyon"}, Devices: []string{"sw7"}, Kinds: []string{"if_down"}}, false},
		{"every list but the severity", notify.Rule{Severities: []string{"warning"}, Sites: []string{"paris"}, Devices: []string{"sw7"}, Kinds: []string{"if_down"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.rule.Matches(a); got != tc.want {
				t.Fatalf("rule %+v matches %s: %v, want %v", tc.rule, a.ID, got, tc.want)
			}
		})
	}
}

// TestDecideDeviceAndKindRules: Decide pages the channels of the rules a
// change matches only: a rule for one device's if_down pages its
// interface alarms, not its node_down nor another device's if_down.
func TestDecideDeviceAndKindRules(t *testing.T) {
	rules := []notify.Rule{
		{Name: "sw7-links", Devices: []string{"sw7"}, Kinds: []string{"if_down"}, Channels: []string{"links"}},
		{Name: "core", Devices: []string{"core1"}, Channels: []string{"core"}},
	}
	for _, tc := range []struct {
		name  string
		f     func(*alarm.Alarm)
		sends []string
	}{
		{"sw7's interface", func(a *alarm.Alarm) { a.Device, a.Kind, a.Check = "sw7", "if_down", "if.2" }, []string{"links"}},
		{"sw7 unreachable", func(a *alarm.Alarm) { a.Device, a.Kind = "sw7", "node_down" }, nil},
		{"sw8's interface", func(a *alarm.Alarm) { a.Device, a.Kind, a.Check = "sw8", "if_down", "if.2" }, nil},
		{"core1, any kind", func(a *alarm.Alarm) { a.Device, a.Kind = "core1", "snmp_unreachable" }, []string{"core"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := change(alarm.WhatOpened, tc.f)
			c.Alarm.ID = alarm.ID(c.Alarm.Site, c.Alarm.Device, c.Alarm.Check)
			var got []string
			for _, s := range notify.Decide(c, rules, c.At).Sends {
				got = append(got, s.Channel)
			}
			if len(got) != len(tc.sends) || len(got) == 1 && got[0] != tc.sends[0] {
				t.Fatalf("sends %v, want %v", got, tc.sends)
			}
		})
	}
}
