package sim

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"
)

// Down takes the agent off the air (true: it reads and drops every request,
// and answers held back by SetDelay are not sent) or back on (false).
func (a *Agent) Down(down bool) {
	if a.down.Swap(down) != down {
		a.sim.log.Info("sim: agent down", "agent", a.name, "down", down)
	}
}

// SetIfOper sets ifOperStatus of interface ifIndex (1-based) to up(1) or
// down(2); ifAdminStatus stays up. While down, its octet counters stop. It
// returns ErrUnknownInterface for an index the agent does not have.
func (a *Agent) SetIfOper(ifIndex int, up bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if ifIndex < 1 || ifIndex > len(a.ifs) {
		return fmt.Errorf("set ifOperStatus of %s: %w: ifIndex %d (the agent has 1 to %d)", a.name, ErrUnknownInterface, ifIndex, len(a.ifs))
	}
	f := &a.ifs[ifIndex-1]
	if f.up == up {
		return nil
	}
	now := a.sim.now()
	f.in = octets(f.in, f.inRate, f.at, now, f.up)
	f.out = octets(f.out, f.outRate, f.at, now, f.up)
	f.at, f.up = now, up
	a.sim.log.Info("sim: interface oper status", "agent", a.name, "ifIndex", ifIndex, "up", up)
	return nil
}

// IfOper reports whether interface ifIndex is operationally up.
func (a *Agent) IfOper(ifIndex int) (up bool, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if ifIndex < 1 || ifIndex > len(a.ifs) {
		return false, fmt.Errorf("ifOperStatus of %s: %w: ifIndex %d", a.name, ErrUnknownInterface, ifIndex)
	}
	return a.ifs[ifIndex-1].up, nil
}

// Interfaces returns the number of interfaces of the agent.
func (a *Agent) Interfaces() int { return len(a.ifs) }

// SetCounterBase sets both octet counters of interface ifIndex to octets as
// of now; they grow from there. Set it a little below 1<<32 to watch
// ifInOctets and ifOutOctets (Counter32) wrap while ifHC* (Counter64) go on.
func (a *Agent) SetCounterBase(ifIndex int, octets uint64) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if ifIndex < 1 || ifIndex > len(a.ifs) {
		return fmt.Errorf("set counter base of %s: %w: ifIndex %d (the agent has 1 to %d)", a.name, ErrUnknownInterface, ifIndex, len(a.ifs))
	}
	f := &a.ifs[ifIndex-1]
	f.at, f.in, f.out = a.sim.now(), octets, octets
	return nil
}

// Reboot restarts the agent's clock: sysUpTime and the v3 engine time start
// from 0, octet counters from 0, all interfaces come up, and the v3 engine
// boots counter goes up by one (so managers get a notInTimeWindow report
// once and resynchronise).
func (a *Agent) Reboot() {
	a.mu.Lock()
	a.boots++
	a.reset(a.sim.now())
	if a.frozen != nil {
		*a.frozen = 0
	}
	boots := a.boots
	a.mu.Unlock()
	a.sim.log.Info("sim: agent rebooted", "agent", a.name, "boots", boots)
}

// FreezeUptime stops (true) or restarts (false) the agent's sysUpTime at
// its current value, as recorded agents (snmpsim recordings) and some broken
// firmware do: the value never moves however long the agent runs. A Reboot
// while frozen freezes it at 0.
func (a *Agent) FreezeUptime(freeze bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !freeze {
		a.frozen = nil
		return
	}
	v := a.snapshotLocked(a.sim.now()).uptime
	a.frozen = &v
}

// SetDelay makes the agent answer every request d after it arrives (0
// answers at once). Delayed answers wait on their own goroutines, so other
// agents and later requests are not held up.
func (a *Agent) SetDelay(d time.Duration) {
	a.delay.Store(int64(max(d, 0)))
}

// Delay returns the current answer delay.
func (a *Agent) Delay() time.Duration { return time.Duration(a.delay.Load()) }

// RandomFault injects one random fault into a random agent and returns a
// one-line description of what it did: an interface toggled down or up, a
// reboot, the device down for Config.DownFor then back up, or a trap to
// Config.TrapTarget. Traps go to the trap target, when configured, for the
// first three as well (linkDown/linkUp, coldStart), as a device would send
// them. It returns ErrNotStarted before Start and ErrClosed after Close.
func (s *Sim) RandomFault(ctx context.Context, rng *rand.Rand) (string, error) {
	if !s.started.Load() {
		return "", ErrNotStarted
	}
	select {
	case <-s.done:
		return "", ErrClosed
	default:
	}
	a := s.agents[rng.IntN(len(s.agents))]
	kinds := 3
	if s.cfg.TrapTarget != "" {
		kinds = 4
	}
	trap := func(what string, send func() error) string {
		if s.cfg.TrapTarget == "" {
			return what
		}
		if err := send(); err != nil {
			s.log.Warn("sim: fault trap", "agent", a.name, "err", err)
			return what + "; trap failed: " + err.Error()
		}
		return what + "; trap sent to " + s.cfg.TrapTarget
	}
	switch k := rng.IntN(kinds); {
	case k == 0 || a.IsDown() && k == 2:
		ifIndex := 1 + rng.IntN(len(a.ifs))
		up, _ := a.IfOper(ifIndex)
		if err := a.SetIfOper(ifIndex, !up); err != nil {
			return "", err
		}
		state := "down"
		if !up {
			state = "up"
		}
		return trap(fmt.Sprintf("%s: interface %d (%s) %s", a.name, ifIndex, ifName(ifIndex), state), func() error {
			return a.SendLinkTrap(ctx, s.cfg.TrapTarget, s.cfg.TrapVersion, ifIndex)
		}), nil
	case k == 1:
		a.Reboot()
		return trap(fmt.Sprintf("%s: rebooted (boots %d)", a.name, a.Boots()), func() error {
			return a.sendTrap(ctx, s.cfg.TrapTarget, s.cfg.TrapVersion, trapColdStart, 0)
		}), nil
	case k == 2:
		a.Down(true)
		s.upAfter(a, s.cfg.DownFor)
		return fmt.Sprintf("%s: down for %s", a.name, s.cfg.DownFor), nil
	default:
		ifIndex := 1 + rng.IntN(len(a.ifs))
		if err := a.SendLinkTrap(ctx, s.cfg.TrapTarget, s.cfg.TrapVersion, ifIndex); err != nil {
			return fmt.Sprintf("%s: trap for interface %d failed: %v", a.name, ifIndex, err), nil
		}
		return fmt.Sprintf("%s: link trap for interface %d sent to %s", a.name, ifIndex, s.cfg.TrapTarget), nil
	}
}

// upAfter brings a back up after d, unless the Sim closes first.
func (s *Sim) upAfter(a *Agent, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			a.Down(false)
		case <-s.done:
		}
	}()
}

// RunFaults injects a random fault every period until ctx is done, calling
// report with each description (or the error). It blocks; run it on a
// goroutine the caller waits for.
func (s *Sim) RunFaults(ctx context.Context, every time.Duration, rng *rand.Rand, report func(what string, err error)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			report(s.RandomFault(ctx, rng))
		}
	}
}
