package bench

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/meshmon/meshmon"
)

// failoverKill is what one kill measured.
type failoverKill struct {
	Victim string `json:"victim"`
	Leader bool   `json:"leader"` // the victim held the lease
	Owned  int    `json:"owned"`  // the victim's devices
	// Moved is the devices the leave moved: the assignment the group
	// settled on without the victim against the one before the kill.
	Moved int `json:"moved"`
	failoverTimes
	Phases string `json:"phases"`
	// RejoinMoved is the devices the victim's return moved.
	RejoinMoved int `json:"rejoin_moved"`
	// Duplicates is the devices that, once the group settled after the
	// return, a poller other than their owner polled.
	Duplicates int `json:"duplicates"`
	// Stale (SIGSTOP) is the samples the resumed victim published under
	// an older assignment, observed after the hand-over.
	Stale int `json:"stale,omitempty"`

	first, polled []time.Duration
}

// failoverTimes is how long after the kills the moved devices' first
// samples from a survivor came.
type failoverTimes struct {
	// SampleP50.. are kill → the first sample of each moved device, as it
	// reached the benchmark; PolledP50.. are the same samples' own time
	// (when the survivor polled).
	SampleP50 string `json:"kill_to_sample_p50"`
	SampleP95 string `json:"kill_to_sample_p95"`
	SampleMax string `json:"kill_to_sample_max"`
	PolledP50 string `json:"polled_p50"`
	PolledMax string `json:"polled_max"`
}

// timesOf is the percentiles of first and polled, both sorted.
func timesOf(first, polled []time.Duration) failoverTimes {
	return failoverTimes{SampleP50: pct(first, 50), SampleP95: pct(first, 95), SampleMax: pct(first, 100),
		PolledP50: pct(polled, 50), PolledMax: pct(polled, 100)}
}

// killOne kills (or stops) a member of the settled group a, led by
// leader, measures the hand-over of its devices, brings it back, and
// returns what it measured and the assignment and leader it settled on.
func (s *failoverSite) killOne(ctx context.Context, k int, size FailoverSize, members []string, a meshmon.Assignment, leader string) (failoverKill, meshmon.Assignment, string, error) {
	dead := leader
	if s.bc.Victim == "member" {
		dead = members[slices.IndexFunc(members, func(m string) bool { return m != leader })]
	}
	own := a.Owned(dead)
	kr := failoverKill{Victim: dead, Leader: dead == leader, Owned: len(own)}
	s.forget()
	killed := time.Now()
	p := s.signal(dead, s.sig)
	first, polled, err := s.firstSamples(ctx, own, dead, killed)
	if err != nil {
		return kr, a, leader, fmt.Errorf("kill %d: %w", k+1, err)
	}
	kr.first, kr.polled = first, polled
	kr.failoverTimes = timesOf(first, polled)
	kr.Phases = s.phases(killed, dead, leader)
	s.out("kill %d at %s: %s (leader %v), %d devices moved: p50 %s p95 %s max %s (%s; first sample %s)\n", k+1, killed.Format("15:04:05.000"),
		dead, kr.Leader, len(own), kr.SampleP50, kr.SampleP95, kr.SampleMax, kr.Phases, pct(first, 0))
	s.out("  polled (the samples' time): p50 %s max %s; %s\n", kr.PolledP50, kr.PolledMax, s.survivorPhases(members, dead, killed))
	left, _, err := s.settle(ctx, slices.DeleteFunc(slices.Clone(members), func(m string) bool { return m == dead }), size.Devices)
	if err != nil {
		return kr, a, leader, fmt.Errorf("kill %d: without %s: %w", k+1, dead, err)
	}
	kr.Moved = meshmon.Moved(a, left)
	rev, at := s.handover(killed, dead)
	if s.sig == sigStop {
		s.forget()
		_ = p.cmd.Process.Signal(sigCont)
	} else if err := s.restartPoller(ctx, dead, p); err != nil {
		return kr, a, leader, err
	}
	back, leader, err := s.settle(ctx, members, size.Devices)
	if err != nil {
		return kr, a, leader, fmt.Errorf("kill %d: %s's return: %w", k+1, dead, err)
	}
	if s.sig == sigStop {
		var late int
		kr.Stale, late = s.stale(dead, rev, at)
		s.out("  resumed %s: %d samples observed after the hand-over (revision %d) under an older assignment (%d observed before it, published after the resume)\n",
			dead, kr.Stale, rev, late-kr.Stale)
	}
	kr.RejoinMoved = meshmon.Moved(left, back)
	if kr.Duplicates, err = s.duplicates(ctx, back, size.Interval); err != nil {
		return kr, back, leader, fmt.Errorf("kill %d: %w", k+1, err)
	}
	s.out("  %s's leave moved %d devices (it had %d); its return moved %d (fair share %.1f); devices polled by another poller than their owner since: %d\n",
		dead, kr.Moved, kr.Owned, kr.RejoinMoved, float64(size.Devices)/float64(len(members)), kr.Duplicates)
	return kr, back, leader, nil
}

// firstSamples waits for the first sample of each of own from another
// poller than dead and returns how long after killed each came, and
// when it was observed (its own time): the rest is the way from the
// survivor's spool to the peer. Both are sorted.
func (s *failoverSite) firstSamples(ctx context.Context, own map[string]bool, dead string, killed time.Time) (first, polled []time.Duration, err error) {
	seen := map[string]bool{}
	for deadline := time.Now().Add(2 * time.Minute); len(seen) < len(own); {
		if time.Now().After(deadline) {
			return nil, nil, fmt.Errorf("%d of %s's %d devices sampled by another member within 2 minutes", len(seen), dead, len(own))
		}
		s.smu.Lock()
		for _, x := range s.samples {
			if own[x.device] && x.poller != dead && !seen[x.device] {
				seen[x.device] = true
				first = append(first, x.at.Sub(killed))
				polled = append(polled, x.observed.Sub(killed))
			}
		}
		s.smu.Unlock()
		if err := waitCtx(ctx, 20*time.Millisecond); err != nil {
			return nil, nil, err
		}
	}
	slices.Sort(first)
	slices.Sort(polled)
	return first, polled, nil
}

// duplicates waits until every device of the settled assignment a has
// been polled by its owner again, and counts the devices that another
// poller polled meanwhile: each device is to be polled by exactly one.
func (s *failoverSite) duplicates(ctx context.Context, a meshmon.Assignment, interval time.Duration) (int, error) {
	from := time.Now()
	within := 2*interval + time.Minute
	for deadline := from.Add(within); s.sampledByOwner(a, from) < len(a.Owners); {
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%d of %d devices polled by their owner within %s of the group settling", s.sampledByOwner(a, from), len(a.Owners), within)
		}
		if err := waitCtx(ctx, 100*time.Millisecond); err != nil {
			return 0, err
		}
	}
	s.smu.Lock()
	defer s.smu.Unlock()
	other := map[string]bool{}
	for _, x := range s.samples {
		if x.observed.After(from) && a.Owners[x.device] != x.poller {
			other[x.device] = true
		}
	}
	return len(other), nil
}

// pct is the p-th percentile of sorted ts, "-" when there are none.
func pct(ts []time.Duration, p int) string {
	if len(ts) == 0 {
		return "-"
	}
	return ts[min(len(ts)-1, len(ts)*p/100)].Round(10 * time.Millisecond).String()
}
