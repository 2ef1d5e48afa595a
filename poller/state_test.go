package poller

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/meshmon/meshmon"
)

func TestDampingObserve(t *testing.T) {
	d := Damping{DownAfter: 2, UpAfter: 1, FlapChanges: 3, FlapWindow: time.Minute}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	type step struct {
		obs  string
		want []announcement
	}
	up := func(from string) announcement { return announcement{From: from, To: stateUp} }
	down := func(from string) announcement { return announcement{From: from, To: stateDown} }
	tests := []struct {
		name  string
		steps []step
	}{
		{"first up is quiet", []step{{stateUp, nil}, {stateUp, nil}}},
		{"first down needs confirmation then announces", []step{{stateDown, nil}, {stateDown, []announcement{down("")}}, {stateDown, nil}}},
		{"one lost probe is no outage", []step{{stateUp, nil}, {stateDown, nil}, {stateUp, nil}, {stateDown, nil}, {stateUp, nil}}},
		{"down then up", []step{{stateUp, nil}, {stateDown, nil}, {stateDown, []announcement{down(stateUp)}}, {stateUp, []announcement{up(stateDown)}}}},
		{"flapping is announced once and then held back", []step{
			{stateUp, nil},
			{stateDown, nil}, {stateDown, []announcement{down(stateUp)}},
			{stateUp, []announcement{up(stateDown)}},
			{stateDown, nil}, {stateDown, []announcement{{From: stateUp, To: stateDown, Flapping: true}}},
			{stateUp, nil},
			{stateDown, nil}, {stateDown, nil},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s checkState
			now := t0
			for i, st := range tt.steps {
				var got []announcement
				s, got = d.observe(s, st.obs, now)
				if len(got) != len(st.want) {
					t.Fatalf("step %d (%s): got %+v, want %+v", i, st.obs, got, st.want)
				}
				for j := range got {
					if got[j] != st.want[j] {
						t.Fatalf("step %d (%s): got %+v, want %+v", i, st.obs, got, st.want)
					}
				}
				now = now.Add(time.Second)
			}
		})
	}
}

func TestDampingFlapEnds(t *testing.T) {
	d := Damping{DownAfter: 1, UpAfter: 1, FlapChanges: 2, FlapWindow: time.Minute}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var s checkState
	s, _ = d.observe(s, stateUp, t0)
	s, _ = d.observe(s, stateDown, t0.Add(time.Second))
	s, a := d.observe(s, stateUp, t0.Add(2*time.Second))
	if len(a) != 1 || !a[0].Flapping {
		t.Fatalf("want a flapping announcement, got %+v", a)
	}
	for i, obs := range []string{stateDown, stateUp} {
		s, a = d.observe(s, obs, t0.Add(time.Duration(3+i)*time.Second))
		if len(a) != 0 || !s.Flapping {
			t.Fatalf("while flapping want silence, got %+v (flapping=%v)", a, s.Flapping)
		}
	}
	// Stable for a whole window: the state it settled in (up) differs from
	// the last announced (down), so it is announced.
	s, a = d.observe(s, stateUp, t0.Add(2*time.Minute))
	if s.Flapping || len(a) != 1 || a[0] != (announcement{From: stateDown, To: stateUp, Settled: true}) {
		t.Fatalf("after the window want down->up announced, got %+v (flapping=%v)", a, s.Flapping)
	}
	// Had it settled where it was last announced, nothing more is said.
	s, a = d.observe(s, stateUp, t0.Add(3*time.Minute))
	if len(a) != 0 {
		t.Fatalf("stable: want silence, got %+v", a)
	}
}

func TestObserveUptime(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		prevUp   uint32
		elapsed  time.Duration
		cur      uint32
		rebooted bool
	}{
		{"advancing", 100_00, time.Minute, 160_00, false},
		{"late answer within tolerance", 100_00, time.Minute, 158_00, false},
		{"went backwards", 100_000, time.Minute, 30_00, true},
		{"rebooted while unobserved long ago", 100_00, time.Hour, 60_00, true},
		{"32-bit wrap is not a reboot", 1<<32 - 30_00, time.Minute, 30_00, false},
		{"frozen uptime is not a reboot", 100_00, time.Minute, 100_00, false},
		{"frozen small uptime is not a reboot", 1_00, time.Hour, 1_00, false},
		{"booted after the last poll and counted past the old value", 10_00, 10 * time.Minute, 60_00, true},
		{"slow answer is not a reboot", 100_00, time.Minute, 100_00 + 57_50, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prev, _ := observeUptime(uptimeState{}, false, tt.prevUp, t0)
			_, got := observeUptime(prev, true, tt.cur, t0.Add(tt.elapsed))
			if got != tt.rebooted {
				t.Fatalf("rebooted = %v, want %v", got, tt.rebooted)
			}
		})
	}
}

// TestObserveUptimeFrozenKeepsBootTime: a sysUpTime that stands still keeps
// the boot time (and so the stored state) steady, poll after poll.
func TestObserveUptimeFrozenKeepsBootTime(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	st, _ := observeUptime(uptimeState{}, false, 12345, t0)
	boot := st.BootTime
	for i := 1; i <= 10; i++ {
		var rebooted bool
		st, rebooted = observeUptime(st, true, 12345, t0.Add(time.Duration(i)*time.Minute))
		if rebooted || !st.BootTime.Equal(boot) {
			t.Fatalf("poll %d: rebooted=%v boot %s, want no reboot and boot %s", i, rebooted, st.BootTime, boot)
		}
	}
}

func TestDampingPoint(t *testing.T) {
	d := Damping{FlapChanges: 3, FlapWindow: 10 * time.Minute}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var r repeats
	var got []pointVerdict
	for i := range 6 { // a reboot every minute
		var v pointVerdict
		r, v = d.point(r, t0.Add(time.Duration(i)*time.Minute))
		got = append(got, v)
	}
	want := []pointVerdict{pointAnnounce, pointAnnounce, pointFlapping, pointHeld, pointHeld, pointHeld}
	if !slices.Equal(got, want) {
		t.Fatalf("verdicts %v, want %v", got, want)
	}
	// Still held within the window of the last one.
	var ended bool
	if r, ended = d.settle(r, t0.Add(14*time.Minute)); !r.Held || ended {
		t.Fatal("hold lifted before a quiet window")
	}
	// A whole quiet window lifts the hold, once; the next one is news again.
	r, ended = d.settle(r, t0.Add(16*time.Minute))
	if r.Held || len(r.Times) != 0 || !ended {
		t.Fatalf("after a quiet window: %+v, ended %v", r, ended)
	}
	if _, ended = d.settle(r, t0.Add(17*time.Minute)); ended {
		t.Fatal("the end of the flapping told twice")
	}
	if _, v := d.point(r, t0.Add(17*time.Minute)); v != pointAnnounce {
		t.Fatalf("first reboot after the quiet window: %v", v)
	}
}

// TestOffsetsSpreadOverTheInterval: the devices' offsets fill the whole
// interval evenly, so a poller's load is the same in every part of it (they
// filled its first half, and a failover in that half polled at half speed).
func TestOffsetsSpreadOverTheInterval(t *testing.T) {
	const n, parts = 20000, 8
	iv := time.Minute
	var counts [parts]int
	for i := range n {
		off := offset(fmt.Sprintf("dev-%05d", i), iv)
		if off < 0 || off >= iv {
			t.Fatalf("offset %s outside [0, %s)", off, iv)
		}
		counts[off*parts/iv]++
	}
	for i, c := range counts {
		if want := n / parts; c < want*9/10 || c > want*11/10 {
			t.Errorf("eighth %d of the interval has %d devices, want %d ± 10%%: %v", i, c, want, counts)
		}
	}
}

// TestFirstRunOncePerSlot: a poller that starts at any point of the
// interval polls each device once in each slot from the start, at its
// offset: its first poll and the next (nextRun) are one interval apart,
// and the first comes within one interval of the start.
func TestFirstRunOncePerSlot(t *testing.T) {
	iv := time.Minute
	grid := time.Date(2026, 12, 5, 17, 9, 0, 0, time.UTC)
	for _, phase := range []time.Duration{0, time.Millisecond, 30 * time.Second, iv - 20*time.Millisecond} {
		now := grid.Add(phase)
		for i := range 1000 {
			name := fmt.Sprintf("dev-%04d", i)
			slot, at := firstRun(name, iv, now)
			if at.Before(now) || !at.Before(now.Add(iv)) || !at.Equal(slot.Add(offset(name, iv))) || !slot.Equal(slot.Truncate(iv)) {
				t.Fatalf("start at +%s: %s first polled at %s in slot %s; want its offset in a slot, within %s of the start", phase, name, at, slot, iv)
			}
			if next, nextAt := nextRun(name, iv, slot, at); !next.Equal(slot.Add(iv)) || nextAt.Sub(at) != iv {
				t.Fatalf("start at +%s: %s polled at %s (slot %s), then at %s (slot %s); want one interval later, in the next slot",
					phase, name, at, slot, nextAt, next)
			}
		}
	}
	// A poller's start schedules its devices so.
	now := grid.Add(iv - 20*time.Millisecond)
	cfg := DefaultConfig()
	cfg.Name, cfg.Site = "p1", "lab"
	cfg.Now = func() time.Time { return now }
	p, err := New(cfg, nil, nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		d := meshmon.Device{Name: fmt.Sprintf("dev-%04d", i), Address: "127.0.0.1", Checks: []string{meshmon.CheckICMP}, Interval: meshmon.Duration(iv)}
		p.upsert(&d, false, true, false)
	}
	for _, e := range p.sched.entries {
		if slot, at := firstRun(e.name, iv, now); !e.at.Equal(at) || !e.slot.Equal(slot) {
			t.Errorf("%s scheduled at %s in slot %s; want %s in slot %s", e.name, e.at, e.slot, at, slot)
		}
	}
}

func TestNextRun(t *testing.T) {
	iv := 10 * time.Second
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	off := offset("dev", iv)
	if off < 0 || off >= iv {
		t.Fatalf("offset %s outside [0, %s)", off, iv)
	}
	slot, at := nextRun("dev", iv, t0, t0.Add(time.Second))
	if !slot.Equal(t0.Add(iv)) || !at.Equal(slot.Add(off)) {
		t.Fatalf("next slot %s at %s, want %s at %s", slot, at, t0.Add(iv), t0.Add(iv).Add(off))
	}
	// A poll that overran several intervals skips the missed slots.
	now := t0.Add(35 * time.Second)
	slot, at = nextRun("dev", iv, t0, now)
	if slot.Before(t0.Add(30*time.Second)) || at.Before(now) {
		t.Fatalf("late: slot %s at %s, want a slot at or after %s not before now", slot, at, t0.Add(30*time.Second))
	}
	// The wall clock stepped back an hour: the next poll is within one
	// interval of the new now, not an hour away.
	now = t0.Add(-time.Hour)
	_, at = nextRun("dev", iv, t0, now)
	if at.Before(now) || at.Sub(now) > iv {
		t.Fatalf("after a clock step back: at %s, now %s", at, now)
	}
}
