package poller_test

import (
	"slices"
	"testing"
	"time"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/alarm"
	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/poller"
	"github.com/meshmon/meshmon/sim"
)

// TestPollerFlappingAlarmsClear flaps one simulated agent's SNMP (caught on
// a change to unreachable, with reachable the last state announced) and
// reboots another until it flaps; once each has been stable for the flap
// window, the events in the stream, folded into central's alarms, leave
// both alarms cleared.
func TestPollerFlappingAlarmsClear(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2, "127.64.0.1")
	const window = 20 * time.Second
	p, _ := e.runPoller(func(c *poller.Config) {
		c.Damping = poller.Damping{DownAfter: 1, UpAfter: 1, FlapChanges: 3, FlapWindow: window}
	})
	a := e.sim.Agents()
	flap, boots := a[0], a[1]
	eventually.True(t, 20*time.Second, "first polls", func() bool { return p.Stats().Polls >= 4 })

	flap.Down(true)
	e.waitKinds(flap.Name(), meshmon.KindSNMPUnreachable)
	flap.Down(false)
	e.waitKinds(flap.Name(), meshmon.KindSNMPUnreachable, meshmon.KindSNMPReachable)
	flap.Down(true)
	e.waitKinds(flap.Name(), meshmon.KindSNMPUnreachable, meshmon.KindSNMPReachable, meshmon.KindFlapping)
	flap.Down(false)

	want := []string{meshmon.KindReboot, meshmon.KindReboot, meshmon.KindFlapping}
	e.rebootUntil(boots, want)

	// Stable for the window: the settled state of each is announced.
	settled := func(dev string, want ...string) {
		t.Helper()
		eventually.True(t, window+30*time.Second, dev+" settled", func() bool { return len(e.events("ev.lab."+dev+".>")) >= len(want) })
		e.waitKinds(dev, want...)
	}
	settled(flap.Name(), meshmon.KindSNMPUnreachable, meshmon.KindSNMPReachable, meshmon.KindFlapping, meshmon.KindSNMPReachable)
	settled(boots.Name(), append(want, meshmon.KindStable)...)

	e.checkOpenedAndCleared(alarm.ID("lab", flap.Name(), meshmon.CheckSNMP), alarm.ID("lab", boots.Name(), "uptime"))
}

// checkOpenedAndCleared folds the site's events into central's alarms, as
// the alarm processor would, and checks that each alarm of ids opened and
// is cleared.
func (e *env) checkOpenedAndCleared(ids ...string) {
	e.t.Helper()
	set := alarm.NewSet("default")
	var seen []string
	for i, ev := range e.events("ev.lab.>") {
		for _, c := range set.Apply(ev, uint64(i+1), ev.Time) {
			seen = append(seen, c.What+" "+c.Alarm.ID)
		}
	}
	for _, id := range ids {
		if !slices.Contains(seen, alarm.WhatOpened+" "+id) {
			e.t.Errorf("alarm %s never opened: changes %v", id, seen)
		}
		if got, _ := set.Get(id); got.State != alarm.StateCleared {
			e.t.Errorf("alarm %s is %s after the flapping settled, want cleared: changes %v", id, got.State, seen)
		}
	}
}

// rebootUntil reboots agent once for each of want, waiting after each for
// the device's events to be want up to it.
func (e *env) rebootUntil(agent *sim.Agent, want []string) {
	e.t.Helper()
	for i := range want {
		// Up long enough that the poll before the reboot saw a sysUpTime
		// greater than the one after: it went backwards.
		eventually.True(e.t, 20*time.Second, "uptime past 3s", func() bool { return agent.Uptime() > 3*time.Second })
		agent.Reboot()
		e.waitKinds(agent.Name(), want[:i+1]...)
	}
}
