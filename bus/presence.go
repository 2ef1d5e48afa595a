package bus

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
)

// Presence is how a poller group tells a dead member from a slow one
// without waiting out the member timeout. Each member answers requests on
// its presence subject (PresenceSubject) for as long as its connection is
// up; the server drops that subscription the moment the connection
// closes. When a member's heartbeats are late by more than
// GroupConfig.Probe, the leader (and, for the leader, every other member)
// asks there:
//
//   - an answer, or none in time (a stopped or starved process, whose
//     connection the server still holds), tells nothing: the member keeps
//     its devices until the member timeout, as before;
//   - "no responders" means no connection of the member is left: its
//     process died (the kernel closed its socket) or its link to the peer
//     broke. It is out at once.
//
// So a SIGKILLed poller's devices move within Probe, a busy machine's late
// heartbeats move nothing, and the member timeout stays long enough for
// the busy machine (docs/operations.md). A member is judged by its answer
// only once it has answered a probe: a credential issued before presence
// existed may not subscribe there, and its member would otherwise look
// gone at its first late heartbeat.

// PresenceSubject is where a poller of site answers its group's presence
// probes: meshmon.group.<site>.alive.<poller>.
func PresenceSubject(site, poller string) string {
	return "meshmon.group." + site + ".alive." + poller
}

// probeRelearn is how often a member not yet known to answer probes is
// asked again.
const probeRelearn = 10 * time.Second

// probeAnswer is what a presence probe found.
type probeAnswer int

const (
	probeSilent   probeAnswer = iota // no answer in time: tells nothing
	probeAnswered                    // the member's connection is up
	probeGone                        // no responders: its connection is closed
)

// probeResult is the answer to a probe of member, whose last heartbeat
// was seen when it was asked.
type probeResult struct {
	member string
	seen   time.Time
	answer probeAnswer
}

// presence is what a member knows of the others' presence; only Run's
// goroutine uses it.
type presence struct {
	answers map[string]bool      // members that answered a probe
	asking  map[string]bool      // members asked and not answered yet
	asked   map[string]time.Time // when each was last asked
	gone    map[string]time.Time // members whose connection closed: their last heartbeat then
	results chan probeResult
}

func newPresence() presence {
	return presence{answers: map[string]bool{}, asking: map[string]bool{}, asked: map[string]time.Time{},
		gone: map[string]time.Time{}, results: make(chan probeResult, 16)}
}

// isGone reports whether member's connection was found closed after the
// last heartbeat seen of it (last; zero when none is left).
func (p presence) isGone(member string, last time.Time) bool {
	at, ok := p.gone[member]
	return ok && !last.After(at)
}

// answerPresence answers the member's presence probes until the returned
// subscription is removed; the connection subscribes again after each
// reconnection.
func (g *Group) answerPresence() (*nats.Subscription, error) {
	instance := []byte(g.cfg.Instance)
	return g.js.Conn().Subscribe(PresenceSubject(g.cfg.Site, g.cfg.Name), func(m *nats.Msg) { _ = m.Respond(instance) })
}

// probe asks the members whether their connection is up: each until it
// first answers (every probeRelearn), so that a member that becomes leader
// knows whom it may judge by their answer; and, while their heartbeats are
// late by more than Probe, those this member judges: the leader every
// member, the others the lease's holder. One probe at a time a member.
func (g *Group) probe(ctx context.Context, v *groupView, now time.Time) {
	if g.cfg.Probe <= 0 || v.synced < 3 {
		return
	}
	leading := g.Leading()
	for m, seen := range v.members {
		if m == g.cfg.Name || v.presence.asking[m] {
			continue
		}
		since := now.Sub(v.presence.asked[m])
		learn := !v.presence.answers[m] && since >= probeRelearn
		judged := leading || m == v.holder
		late := judged && v.presence.answers[m] && now.Sub(seen) > g.cfg.Probe && since >= g.cfg.Probe && !v.presence.isGone(m, seen)
		if !learn && !late {
			continue
		}
		v.presence.asking[m], v.presence.asked[m] = true, now
		go g.ask(ctx, v.presence.results, m, seen)
	}
}

// ask sends one presence probe to member and hands its answer to out.
func (g *Group) ask(ctx context.Context, out chan<- probeResult, member string, seen time.Time) {
	actx, cancel := context.WithTimeout(ctx, g.cfg.Probe)
	defer cancel()
	r := probeResult{member: member, seen: seen}
	_, err := g.js.Conn().RequestWithContext(actx, PresenceSubject(g.cfg.Site, member), nil)
	switch {
	case err == nil:
		r.answer = probeAnswered
	case errors.Is(err, nats.ErrNoResponders):
		r.answer = probeGone
	}
	select {
	case out <- r:
	case <-ctx.Done():
	}
}

// onProbe notes a probe's answer: a member that answered before and has
// no connection now, with no heartbeat since it was asked, is gone.
func (g *Group) onProbe(v *groupView, r probeResult) {
	p := v.presence
	delete(p.asking, r.member)
	switch {
	case r.answer == probeAnswered:
		p.answers[r.member] = true
	case r.answer == probeGone && p.answers[r.member] && v.members[r.member].Equal(r.seen):
		p.gone[r.member] = r.seen
		g.log.Warn("poller group: a member's connection is closed; its devices go to the others now",
			"member", r.member, "since_heartbeat", time.Since(r.seen).Round(time.Millisecond))
	}
}
