package bus

import (
	"log/slog"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/internal/eventually"
)

// TestGroupPresence: with a member timeout far longer than the test, a
// member whose connection closes (its process killed) loses its devices
// at once, found by the presence probe, and so does a leader; a member
// whose heartbeats stop while its connection stays up (a hung process)
// keeps them.
func TestGroupPresence(t *testing.T) {
	ts, _, js := runJS(t)
	ctx := testCtx(t)
	inv, err := OpenInventory(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	const n = 30
	putDevices(t, inv, n)
	const timeout = time.Minute // no move in this test waits for it
	long := func(c *GroupConfig) { c.MemberTimeout = timeout }
	url := ts.srv.ClientURL()
	members := []*member{startMemberWith(t, url, "p1", long), startMemberWith(t, url, "p2", long), startMemberWith(t, url, "p3", long)}
	var a meshmon.Assignment
	eventually.NoError(t, 20*time.Second, "a settled assignment", func() (err error) { a, err = settled(members, n); return err })
	heard := func(name string) time.Time {
		reg, err := OpenRegistry(ctx, js)
		if err != nil {
			t.Fatal(err)
		}
		ps, err := reg.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			if p.Name == name {
				return p.LastSeen
			}
		}
		return time.Time{}
	}

	// A member hangs: its heartbeats stop, its connection stays. Well
	// past the probe it still has its devices: it answers.
	hung := members[slices.IndexFunc(members, func(m *member) bool { return !m.group.Leading() })]
	before := a.Revision
	hung.silent.Store(true)
	last := heard(hung.name)
	eventually.True(t, 20*time.Second, "the hung member's heartbeat 10 probes old", func() bool {
		return time.Since(last) > 10*DefaultGroupConfig("", "", "").Probe
	})
	if a, err = settled(members, n); err != nil || a.Revision != before {
		t.Fatalf("a hung member whose connection is up lost its devices before the member timeout: revision %d (was %d), %v", a.Revision, before, err)
	}
	hung.silent.Store(false)

	// A member is killed: its connection closes, and its devices move
	// long before the member timeout; no other device moves.
	victim := slices.IndexFunc(members, func(m *member) bool { return !m.group.Leading() })
	dead := members[victim].name
	owners := maps.Clone(a.Owners)
	killed := time.Now()
	members[victim].crash()
	members = slices.Delete(members, victim, victim+1)
	eventually.NoError(t, timeout/3, "the killed member's devices moved", func() (err error) { a, err = settled(members, n); return err })
	t.Logf("a killed member's devices moved %s after the kill (member timeout %s)", time.Since(killed).Round(time.Millisecond), timeout)
	for d, p := range owners {
		if p != dead && a.Owners[d] != p {
			t.Fatalf("device %s moved from %s to %s though %s is alive", d, p, a.Owners[d], p)
		}
	}

	// The leader is killed: the survivor leads and has every device.
	leader := slices.IndexFunc(members, func(m *member) bool { return m.group.Leading() })
	killed = time.Now()
	members[leader].crash()
	members = slices.Delete(members, leader, leader+1)
	eventually.NoError(t, timeout/3, "the killed leader's devices moved", func() (err error) { a, err = settled(members, n); return err })
	t.Logf("a killed leader's devices moved %s after the kill", time.Since(killed).Round(time.Millisecond))
}

// TestPresenceVerdict: a probe's answer takes a member for gone only when
// no responder was left, the member answered a probe before (a credential
// that may not subscribe to its presence subject never answers), and no
// heartbeat of it came since it was asked.
func TestPresenceVerdict(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name     string
		answered bool          // it answered a probe before
		since    time.Duration // its heartbeat since it was asked
		answer   probeAnswer
		gone     bool
	}{
		{"no responders", true, 0, probeGone, true},
		{"never answered", false, 0, probeGone, false},
		{"a heartbeat since", true, time.Millisecond, probeGone, false},
		{"answered", true, 0, probeAnswered, false},
		{"no answer in time", true, 0, probeSilent, false},
	} {
		g := &Group{cfg: GroupConfig{Name: "p1"}, log: slog.New(slog.DiscardHandler)}
		v := &groupView{members: map[string]time.Time{"p1": t0, "p2": t0.Add(c.since)}, presence: newPresence(),
			start: t0.Add(-time.Hour), current: meshmon.Assignment{Members: []string{"p1", "p2"}}}
		v.presence.answers["p2"] = c.answered
		v.presence.asking["p2"] = true
		g.onProbe(v, probeResult{member: "p2", seen: t0, answer: c.answer})
		if v.presence.asking["p2"] {
			t.Errorf("%s: still asking after the answer", c.name)
		}
		live := v.live("p1", t0.Add(time.Second), time.Minute)
		if got := !slices.Contains(live, "p2"); got != c.gone {
			t.Errorf("%s: gone %v, want %v (live %v)", c.name, got, c.gone, live)
		}
	}
}
