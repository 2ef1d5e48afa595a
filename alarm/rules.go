package alarm

import (
	"github.com/meshmon/meshmon"
)

// op is what an event does to the alarm of its check.
type op uint8

const (
	opNone  op = iota
	opOpen     // a failure: open the alarm, or repeat it
	opClear    // a recovery: clear the alarm
)

// rule is what classify makes of an event: which check's alarm it touches,
// how, and at what severity.
type rule struct {
	op       op
	check    string
	severity string
}

// Trap rules: the well-known traps (labelled by the poller, Trap.Labels
// "trap") that open or clear an alarm. linkDown and linkUp share the
// polled interface's check ("if.<ifIndex>"), so a linkDown trap and the
// poll that sees the interface down are one alarm. A coldStart or
// warmStart opens an alarm of its own, which a NOC clears by hand.
var trapRules = map[string]rule{
	"linkDown":  {op: opOpen, severity: meshmon.SeverityMajor},
	"linkUp":    {op: opClear},
	"coldStart": {op: opOpen, check: "trap.coldStart", severity: meshmon.SeverityWarning},
	"warmStart": {op: opOpen, check: "trap.warmStart", severity: meshmon.SeverityWarning},
}

// classify returns what an event does to the alarms: failure kinds open
// the alarm of their check, recoveries clear it (stable is the recovery of
// reboot flapping, whose check has no up state), trap rules do either;
// anything else (a reboot, an unknown trap) does nothing.
func classify(d meshmon.EventData) rule {
	switch d.Kind {
	case meshmon.KindNodeDown, meshmon.KindSNMPUnreachable, meshmon.KindIfDown, meshmon.KindFlapping:
		return rule{op: opOpen, check: d.Check, severity: d.Severity}
	case meshmon.KindNodeUp, meshmon.KindSNMPReachable, meshmon.KindIfUp, meshmon.KindStable:
		return rule{op: opClear, check: d.Check}
	case meshmon.KindTrap:
		return classifyTrap(d.Trap)
	}
	return rule{}
}

func classifyTrap(tr *meshmon.Trap) rule {
	if tr == nil {
		return rule{}
	}
	name := tr.Labels["trap"]
	r, ok := trapRules[name]
	if !ok {
		return rule{}
	}
	if r.check == "" { // linkDown, linkUp: the interface's check
		idx := tr.Labels["if_index"]
		if idx == "" {
			return rule{}
		}
		r.check = "if." + idx
	}
	return r
}

// correlated reports whether an alarm of check can be a symptom of its
// device's parent being down: the device is unreachable, by ICMP or SNMP.
func correlated(check string) bool {
	return check == meshmon.CheckICMP || check == meshmon.CheckSNMP
}

// Correlatable reports whether the alarm may be, or become, a symptom of
// its device's parent: an unreachable alarm (ICMP or SNMP) of a device that
// names a parent. Whether it is one depends on which event came first, so
// notifications let such an alarm settle before they page it.
func (a Alarm) Correlatable() bool { return a.Parent != "" && correlated(a.Check) }
