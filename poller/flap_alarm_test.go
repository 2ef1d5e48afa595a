package poller

import (
	"encoding/json"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/alarm"
	"github.com/meshmon/meshmon/storage"
)

// flapRig runs one device's observations through the poller's own event
// building (observation.check, observeSNMP) at the times a test gives, and
// folds the events into central's alarm.Set, as the alarm processor would.
type flapRig struct {
	t      *testing.T
	p      *Poller
	tg     *target
	set    *alarm.Set
	seq    uint64
	kinds  []string // every event kind sent, in order
	at     time.Time
	uptime uint32 // the device's sysUpTime, in ticks, at the next poll
}

func newFlapRig(t *testing.T) *flapRig {
	r := &flapRig{t: t, at: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), uptime: 100_000}
	cfg := DefaultConfig()
	cfg.Name, cfg.Tenant, cfg.Site = "p1", "acme", "par"
	cfg.Damping = DefaultDamping()
	cfg.Now = func() time.Time { return r.at }
	store, err := storage.Open(filepath.Join(t.TempDir(), "poller.db"), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	r.p = &Poller{cfg: cfg, store: store, log: slog.New(slog.DiscardHandler)}
	r.tg = &target{dev: &meshmon.Device{Name: "sw1", Address: "192.0.2.1"}}
	r.set = alarm.NewSet("acme")
	return r
}

// poll observes the device at the rig's clock: ICMP reached or not, and,
// when reached, an SNMP answer with the rig's sysUpTime; then the clock
// moves on by a poll interval and the uptime with it.
func (r *flapRig) poll(reached bool) {
	r.t.Helper()
	o := &observation{p: r.p, t: r.tg, slot: r.at, prev: r.p.readState(r.tg)}
	o.reach(meshmon.CheckICMP, reached, "timeout")
	if reached {
		r.p.observeSNMP(o, SNMPResult{OK: true, SysUpTime: r.uptime})
	}
	if err := r.p.store.Commit(nil, o.states); err != nil {
		r.t.Fatal(err)
	}
	if o.uptime != nil {
		r.tg.uptime, r.tg.uptimeOK = *o.uptime, true
	}
	for _, m := range o.msgs {
		if m.Stream != meshmon.StreamEvents {
			continue
		}
		var ev meshmon.Event
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			r.t.Fatal(err)
		}
		r.kinds = append(r.kinds, ev.Data.Kind)
		r.seq++
		r.set.Apply(ev, r.seq, r.at)
	}
	r.at = r.at.Add(10 * time.Second)
	r.uptime += 10_00
}

// reboot makes the device answer the next poll freshly booted.
func (r *flapRig) reboot() { r.uptime = 5_00 }

func (r *flapRig) state(check string) string {
	a, ok := r.set.Get(alarm.ID("par", "sw1", check))
	if !ok {
		return "none"
	}
	return a.State
}

// TestFlappingAlarmClearsWhenStable: an alarm opened by a flapping event
// clears once the device has been stable for the damping window, whether
// the flap was of an up/down check caught on a change to down while the
// last state announced was up, or of reboots.
func TestFlappingAlarmClearsWhenStable(t *testing.T) {
	t.Run("icmp caught flapping on a change to down", func(t *testing.T) {
		r := newFlapRig(t)
		r.poll(true)
		// down (announced), up (announced), down, up, down: the fifth change
		// is to down with up the last state announced.
		for _, reached := range []bool{false, false, true, false, false, true, false, false, true, false, false} {
			r.poll(reached)
		}
		if got := r.state(meshmon.CheckICMP); got != alarm.StateOpen {
			t.Fatalf("after flapping: icmp alarm %s, want open (events %v)", got, r.kinds)
		}
		if r.kinds[len(r.kinds)-1] != meshmon.KindFlapping {
			t.Fatalf("events %v, want the last a flapping", r.kinds)
		}
		// Stable and up for 11 minutes.
		for range 66 {
			r.poll(true)
		}
		if got := r.state(meshmon.CheckICMP); got != alarm.StateCleared {
			t.Fatalf("stable up for 11 minutes after flapping: icmp alarm %s, want cleared (events %v)", got, r.kinds)
		}
		if last := r.kinds[len(r.kinds)-1]; last != meshmon.KindNodeUp {
			t.Fatalf("events %v, want the settled state (node_up) last", r.kinds)
		}
	})
	t.Run("icmp caught flapping on a change to up settles down", func(t *testing.T) {
		r := newFlapRig(t)
		// down from the start (announced), then up, down, up, down, up: the
		// fifth change is to up with down the last state announced.
		for _, reached := range []bool{false, false, true, false, false, true, false, false, true} {
			r.poll(reached)
		}
		if a, _ := r.set.Get(alarm.ID("par", "sw1", meshmon.CheckICMP)); a.Severity != meshmon.SeverityWarning {
			t.Fatalf("after flapping: icmp alarm %+v, want the flapping's warning (events %v)", a, r.kinds)
		}
		for range 66 {
			r.poll(false)
		}
		a, _ := r.set.Get(alarm.ID("par", "sw1", meshmon.CheckICMP))
		if a.State != alarm.StateOpen || a.Severity != meshmon.SeverityCritical {
			t.Fatalf("settled down after flapping: icmp alarm %s %s, want open and critical again (events %v)", a.State, a.Severity, r.kinds)
		}
	})
	t.Run("reboots", func(t *testing.T) {
		r := newFlapRig(t)
		r.poll(true)
		for range 5 { // a reboot every 30 s
			r.reboot()
			r.poll(true)
			r.poll(true)
			r.poll(true)
		}
		if got := r.state("uptime"); got != alarm.StateOpen {
			t.Fatalf("after rebooting 5 times: uptime alarm %s, want open (events %v)", got, r.kinds)
		}
		for range 66 {
			r.poll(true)
		}
		if got := r.state("uptime"); got != alarm.StateCleared {
			t.Fatalf("stable for 11 minutes after reboot flapping: uptime alarm %s, want cleared (events %v)", got, r.kinds)
		}
		// Once stable, a reboot is news again and opens nothing.
		n := len(r.kinds)
		r.reboot()
		r.poll(true)
		if got := r.kinds[n:]; len(got) != 1 || got[0] != meshmon.KindReboot || r.state("uptime") != alarm.StateCleared {
			t.Fatalf("first reboot after settling: events %v, uptime alarm %s", got, r.state("uptime"))
		}
	})
}
