package poller

import (
	"time"
)

// States a check can be in.
const (
	stateUp   = "up"
	stateDown = "down"
)

// Damping decides when an observed change becomes an event.
type Damping struct {
	// DownAfter and UpAfter are how many consecutive observations of a new
	// state confirm it. One lost UDP packet must not page anybody, so going
	// down takes 2 by default; coming back takes 1.
	DownAfter int
	UpAfter   int
	// FlapChanges transitions within FlapWindow mark a check as flapping:
	// one "flapping" event is sent and further transitions are held back
	// until the check has been stable for a whole FlapWindow; then the
	// state it settled in is announced, even when it is the one last
	// announced before the flap: the flapping event opened (or repeated)
	// the check's alarm, and the settled state is what clears it, or
	// makes it the failure again.
	FlapChanges int
	FlapWindow  time.Duration
}

// DefaultDamping returns the damping used when a config sets none.
func DefaultDamping() Damping {
	return Damping{DownAfter: 2, UpAfter: 1, FlapChanges: 5, FlapWindow: 10 * time.Minute}
}

// checkState is the persisted state of one check of one device.
type checkState struct {
	State    string      `json:"state,omitempty"`    // confirmed state; "" before the first confirmation
	Reported string      `json:"reported,omitempty"` // last state announced by an event
	Pending  string      `json:"pending,omitempty"`  // candidate state being confirmed
	Count    int         `json:"count,omitempty"`    // consecutive observations of Pending
	Changes  []time.Time `json:"changes,omitempty"`  // recent confirmed transitions, for flap detection
	Flapping bool        `json:"flapping,omitempty"`
	Since    time.Time   `json:"since"` // when State was confirmed
	Reason   string      `json:"reason,omitempty"`
}

// announcement is what observe decided to tell the world.
type announcement struct {
	From, To string
	Flapping bool // the check just started flapping; To is its current state
	Settled  bool // the check stopped flapping: To is the state it settled in
}

// observe feeds one observation into the state machine and returns the new
// state and what, if anything, to announce. It is a pure function.
func (d Damping) observe(s checkState, obs string, now time.Time) (checkState, []announcement) {
	var out []announcement
	if obs == s.State {
		s.Pending, s.Count = "", 0
	} else {
		if s.Pending == obs {
			s.Count++
		} else {
			s.Pending, s.Count = obs, 1
		}
		need := d.UpAfter
		if obs == stateDown {
			need = d.DownAfter
		}
		if s.Count >= max(need, 1) {
			first := s.State == ""
			s.State, s.Since = obs, now
			s.Pending, s.Count = "", 0
			switch {
			case first && obs == stateUp:
				// Being up when monitoring starts is not news.
				s.Reported = obs
			case first:
				s.Reported = obs
				out = append(out, announcement{From: "", To: obs})
			default:
				s.Changes = append(s.Changes, now)
			}
		}
	}
	s.Changes = pruneBefore(s.Changes, now.Add(-d.FlapWindow))
	switch {
	case s.Flapping && len(s.Changes) == 0:
		s.Flapping = false
		out = append(out, announcement{From: s.Reported, To: s.State, Settled: true})
		s.Reported = s.State
	case s.Flapping:
	case d.FlapChanges > 0 && len(s.Changes) >= d.FlapChanges:
		s.Flapping = true
		out = append(out, announcement{From: s.Reported, To: s.State, Flapping: true})
	case s.State != s.Reported:
		out = append(out, announcement{From: s.Reported, To: s.State})
		s.Reported = s.State
	}
	return s, out
}

func pruneBefore(ts []time.Time, cutoff time.Time) []time.Time {
	i := 0
	for i < len(ts) && ts[i].Before(cutoff) {
		i++
	}
	if i == len(ts) {
		return nil
	}
	return ts[i:]
}

// uptimeState is the persisted view of a device's sysUpTime.
type uptimeState struct {
	BootTime time.Time `json:"boot_time"` // observation time minus sysUpTime
	Uptime   uint32    `json:"uptime"`
	At       time.Time `json:"at"`
	// Reboots are the recent reboots seen, for damping (see Damping.point).
	Reboots repeats `json:"reboots,omitzero"`
}

// rebootTolerance is how far the computed boot time may move before it
// counts as a reboot: agents answer late (up to a request timeout) and
// clocks drift a little.
const rebootTolerance = 3 * time.Second

// tickWrap is the span of a 32-bit TimeTicks counter (about 497 days).
const tickWrap = time.Duration(1<<32) * 10 * time.Millisecond

// observeUptime reports whether the device rebooted between two polls. A
// reboot needs evidence that the counter restarted:
//   - sysUpTime went backwards (a 32-bit wrap, which moves the boot time by
//     almost exactly tickWrap, aside), or
//   - sysUpTime advanced, but is shorter than the time since the last poll
//     by more than rebootTolerance: the device booted after it was last seen
//     and has counted up past the old value since.
//
// A sysUpTime that does not advance at all (recorded or simulated agents,
// some broken firmware) is never a reboot, however far the wall clock has
// moved. The boot time is kept steady unless the device rebooted.
func observeUptime(prev uptimeState, ok bool, uptime uint32, now time.Time) (uptimeState, bool) {
	next := uptimeState{BootTime: now.Add(-ticksDur(uptime)), Uptime: uptime, At: now, Reboots: prev.Reboots}
	if !ok {
		return next, false
	}
	moved := next.BootTime.Sub(prev.BootTime)
	wrapped := uptime < prev.Uptime && absDur(moved-tickWrap) <= rebootTolerance
	elapsed := now.Sub(prev.At)
	switch {
	case wrapped:
		return next, false
	case uptime < prev.Uptime:
		// Went backwards: the plainest sign of a reboot, however recent
		// the previous one.
		return next, true
	case uptime > prev.Uptime && ticksDur(uptime)+rebootTolerance < elapsed:
		// Up for less time than has passed since the last poll.
		return next, true
	case moved >= -rebootTolerance:
		// Late answers, or a counter that stands still: keep the boot time.
		next.BootTime = prev.BootTime
	}
	return next, false
}

func ticksDur(t uint32) time.Duration { return time.Duration(t) * 10 * time.Millisecond }

// repeats is the damping state of a point event (one that has no "back to
// normal", like a reboot): when it happened lately, and whether it is held
// back.
type repeats struct {
	Times []time.Time `json:"times,omitempty"`
	Held  bool        `json:"held,omitempty"`
}

// pointVerdict is what Damping.point decides about one occurrence.
type pointVerdict int

const (
	pointAnnounce pointVerdict = iota // tell the world
	pointFlapping                     // it happens too often: announce that, once
	pointHeld                         // held back
)

// point damps a repetitive point event seen at now: FlapChanges of them
// within FlapWindow make it flapping, announced once; further ones are held
// back until a whole FlapWindow passes without one (see settle). It is a
// pure function.
func (d Damping) point(r repeats, now time.Time) (repeats, pointVerdict) {
	r.Times = append(pruneBefore(r.Times, now.Add(-d.FlapWindow)), now)
	switch {
	case r.Held:
		return r, pointHeld
	case d.FlapChanges > 0 && len(r.Times) >= d.FlapChanges:
		r.Held = true
		return r, pointFlapping
	}
	return r, pointAnnounce
}

// settle forgets occurrences older than FlapWindow and lifts the hold once
// none is left; ended reports that it lifted it now: the flapping is over,
// and is to be announced as such (the flapping event opened an alarm that
// nothing else clears).
func (d Damping) settle(r repeats, now time.Time) (_ repeats, ended bool) {
	r.Times = pruneBefore(r.Times, now.Add(-d.FlapWindow))
	if len(r.Times) == 0 && r.Held {
		r.Held = false
		return r, true
	}
	return r, false
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// counterState is the last octet counters of one interface, for rates.
type counterState struct {
	In, Out uint64
	HC      bool
	At      time.Time
}
