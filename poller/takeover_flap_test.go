package poller_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/alarm"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/poller"
	"github.com/meshmon/meshmon/sim"
)

// TestTakeOverFlappingAlarmsClear: a device whose SNMP flaps and one that
// reboots until it flaps, both polled by g1, move to g2 when g1 crashes,
// while the flapping holds; once each has been stable for the flap
// window, g2 announces the state it settled in (snmp_reachable, stable),
// and the events, folded into central's alarms, leave both alarms
// cleared. Before, g2 seeded the checks from the flapping events as
// plain states, so nothing ever cleared them, and wrote the uptime check
// over the reboot history, which made a reboot of nothing.
func TestTakeOverFlappingAlarmsClear(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 4, "127.65.0.1")
	const window = 30 * time.Second
	damping := func(c *poller.Config) {
		c.Damping = poller.Damping{DownAfter: 1, UpAfter: 1, FlapChanges: 4, FlapWindow: window}
	}
	crash, _ := e.runMemberWith("g1", e.url, damping)
	e.runMemberWith("g2", e.url, damping)
	ctx := context.Background()
	var a meshmon.Assignment
	eventually.True(t, 20*time.Second, "both members assigned", func() bool {
		kv, err := e.js.KeyValue(ctx, bus.GroupBucket)
		if err != nil {
			return false
		}
		a, err = bus.ReadAssignment(ctx, kv, "lab")
		return err == nil && len(a.Members) == 2
	})
	var mine []*sim.Agent
	for _, ag := range e.sim.Agents() {
		if a.Owners[ag.Name()] == "g1" {
			mine = append(mine, ag)
		}
	}
	if len(mine) < 2 {
		t.Fatalf("g1 owns %d of 4 devices, want 2: %v", len(mine), a.Owners)
	}
	flap, boots := mine[0], mine[1]
	eventually.True(t, 20*time.Second, "first polls by g1", func() bool {
		return len(e.metrics("mx.lab."+flap.Name()+".system")) >= 2 && len(e.metrics("mx.lab."+boots.Name()+".system")) >= 2
	})

	flap.Down(true)
	e.waitKinds(flap.Name(), meshmon.KindSNMPUnreachable)
	flap.Down(false)
	e.waitKinds(flap.Name(), meshmon.KindSNMPUnreachable, meshmon.KindSNMPReachable)
	flap.Down(true)
	e.waitKinds(flap.Name(), meshmon.KindSNMPUnreachable, meshmon.KindSNMPReachable, meshmon.KindSNMPUnreachable)
	// The fourth change, to reachable, is the flap: the flapping event
	// says reachable, as the device stays.
	flap.Down(false)
	e.waitKinds(flap.Name(), meshmon.KindSNMPUnreachable, meshmon.KindSNMPReachable, meshmon.KindSNMPUnreachable, meshmon.KindFlapping)
	reboots := []string{meshmon.KindReboot, meshmon.KindReboot, meshmon.KindReboot, meshmon.KindFlapping}
	e.rebootUntil(boots, reboots)

	crash()
	eventually.True(t, 20*time.Second, "g2 to poll both", func() bool {
		return polledBy(e.metrics("mx.lab."+flap.Name()+".system"), "g2") > 0 && polledBy(e.metrics("mx.lab."+boots.Name()+".system"), "g2") > 0
	})

	settled := func(dev string, want ...string) {
		t.Helper()
		eventually.NoError(t, window+30*time.Second, dev+" settled at g2", func() error {
			evs := e.events("ev.lab." + dev + ".>")
			if len(evs) < len(want) {
				return fmt.Errorf("events %v", kinds(evs))
			}
			return nil
		})
		evs := e.waitKinds(dev, want...)
		if last := evs[len(want)-1]; last.Data.Poller != "g2" {
			t.Fatalf("%s: %s by %s, want by g2, which took the device over while it flapped (the window is too short for this machine?)", dev, last.Data.Kind, last.Data.Poller)
		}
		if len(evs) > len(want) {
			t.Fatalf("%s: events %v, want %v", dev, kinds(evs), want)
		}
	}
	settled(flap.Name(), meshmon.KindSNMPUnreachable, meshmon.KindSNMPReachable, meshmon.KindSNMPUnreachable, meshmon.KindFlapping, meshmon.KindSNMPReachable)
	settled(boots.Name(), append(reboots, meshmon.KindStable)...)

	e.checkOpenedAndCleared(alarm.ID("lab", flap.Name(), meshmon.CheckSNMP), alarm.ID("lab", boots.Name(), "uptime"))
}

// polledBy counts the samples of samples that poller made.
func polledBy(samples []storedSample, poller string) int {
	n := 0
	for _, s := range samples {
		if s.Poller == poller {
			n++
		}
	}
	return n
}
