package peer

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/bus"
)

// keepPoll is how often a site peer looks at its link to central.
const keepPoll = 100 * time.Millisecond

// keepSourceConsumers is a site peer's care, in each account it serves
// central from, of the consumers central sources its streams through
// (bus.EnsureSourceConsumers), until ctx is done.
func (p *Peer) keepSourceConsumers(ctx context.Context) {
	srv := p.Server()
	if srv == nil {
		return
	}
	type account struct {
		name string
		conn func() (*nats.Conn, error)
	}
	var accounts []account
	if len(p.cfg.Tenants) == 0 {
		accounts = append(accounts, account{p.cfg.Tenant, func() (*nats.Conn, error) {
			return p.InProcessConn(nats.Name("meshmon-peer-keeper"))
		}})
	}
	for _, t := range p.cfg.Tenants {
		accounts = append(accounts, account{t.Account, func() (*nats.Conn, error) {
			return t.upkeepConn(srv, p.cfg.Site, "meshmon-peer-keeper-"+t.Name)
		}})
	}
	var wg sync.WaitGroup
	for _, a := range accounts {
		acc, err := srv.LookupAccount(a.name)
		if err != nil {
			p.log.Error("peer source keeper: the account", "account", a.name, "err", err)
			continue
		}
		nc, err := a.conn()
		if err != nil {
			p.log.Error("peer source keeper: in-process connection", "account", a.name, "err", err)
			continue
		}
		wg.Go(func() {
			defer nc.Close()
			p.keepAccount(ctx, nc, acc)
		})
	}
	wg.Wait()
}

// keepAccount looks after the source consumers of one account: it keeps
// them clear of a stall on flow control while central is out of reach, and,
// in a site cluster, moves a consumer's leadership off a member whose own
// link to central is down while another member's is up.
//
// Cut silently, the link looks up until its pings fail (up to 20 s), and a
// consumer sends its deliveries, and a flow-control request, into the
// cut. It then stays stalled on that request, which nobody will answer:
// when the link returns it delivers nothing, even from where central asks
// it to start again, until central answers the stall its next heartbeat
// names (nats-server 2.15.2), a second or two later.
//
// So once central's JetStream is out of reach, the member that leads a
// consumer subscribes to its deliver subject (a keeper) and answers each
// flow-control request and each stall with an empty reply, as JetStream
// answers a stall: that acknowledges nothing, so what central did not
// store is delivered again when its source asks. The consumer delivers to
// the keeper what it has (up to its acknowledgement limit) and then, idle,
// asks for flow control at its next heartbeat; the keeper answers that and
// leaves, so the consumer waits, unstalled, for central. A keeper still
// there when the link returns, or when its member stops leading the
// consumer, leaves then. Only the leader keeps: a keeper elsewhere in the
// cluster would be interest the leader sees over a route, and while
// another member's link is up the consumer would deliver into it whenever
// central sets its source up again, and central, which takes what the
// consumer says it delivered as what it has, would skip those events.
//
// A stall central answers (a heartbeat named a request lost in a cut the
// keeper did not see: one shorter than the link's pings, after which the
// link is replaced) leaves the consumer at its limit with no request out
// until its next heartbeat, a second later. So the keeper hears every
// flow-control reply to its consumers, and when one answers a stall while
// the link is up it prompts the consumer it leads, if it sits at its limit
// (bus.PromptSourceConsumer): the consumer asks central for flow control
// at once. It sets the limit back once the consumer is under it
// (bus.RestoreSourceConsumer). A reply may be to another site's consumer
// (the subjects are the same at every site); the prompt then raises the
// limit of a consumer waiting on central's answer, which costs one
// delivery.
//
// A request lost in a cut the keeper did not see stays out after central
// resets the consumer, and nats-server 2.15.3's reset does not clear it
// (nor the bytes counted against the consumer's window): the reset
// consumer delivers nothing, or one window, until its next heartbeat
// names the request and central answers that stall, up to a second
// later. So the member that leads a consumer taps its deliver subject
// (flowControlTap) the whole time: it notes each flow-control request and
// heartbeat-named stall, and forgets one once a reply to it is heard. When
// it hears the site answer a reset request of central's (resetAnswers),
// it answers the request still out at once, with an empty reply (a keeper
// still subscribed leaves first). The reset is done by then, so the
// consumer delivers from where central asked and its next request goes to
// central. A request central did get and answers too costs nothing: the
// consumer takes the first answer and ignores the second (whose
// acknowledgement the next answer carries). The tap is a queue
// subscription, which a consumer without a deliver group does not count
// as interest: it never makes the consumer deliver. Its price is a copy of
// every delivery to the peer itself; the link does not carry it
// (leafDenyImports).
//
// A consumer delivers to central only over its leader's own link (a leaf
// link's interest does not cross the site's routes). So in a site cluster
// a member that leads a consumer while its link is down, and sees another
// member's link up (anotherLinked), steps down from it for another member
// to lead, trying at most once every handoffEvery.
//
// Each look is observe (keeperSnapshot), decide (keeper.decide, pure),
// act; what it knows of the server's protocol is in natsproto_v2_15.go.
func (p *Peer) keepAccount(ctx context.Context, nc *nats.Conn, acc *server.Account) {
	beacon := linkBeacon(p.cfg.Site)
	var beaconSub *nats.Subscription // while this member's link is up
	var subs []*nats.Subscription    // for as long as the keeper runs
	consumers := []*keptConsumer{
		{stream: bus.EventsStream, name: bus.SourceConsumer(bus.EventsStream), tap: &flowControlTap{}},
		{stream: bus.MetricsStream, name: bus.SourceConsumer(bus.MetricsStream), tap: &flowControlTap{}},
	}
	defer func() {
		for _, c := range consumers {
			if c.keeper != nil {
				_ = c.keeper.Unsubscribe()
			}
			_ = c.tap.follow(nc, "", false)
		}
		if beaconSub != nil {
			_ = beaconSub.Unsubscribe()
		}
		for _, sub := range subs {
			_ = sub.Unsubscribe()
		}
	}()
	// listen subscribes to subject for as long as the keeper runs.
	listen := func(subject string, f nats.MsgHandler) {
		sub, err := nc.Subscribe(subject, f)
		if err != nil {
			p.log.Warn("peer source keeper: subscribe", "subject", subject, "err", err)
			return
		}
		subs = append(subs, sub)
	}
	// The stall answers heard, and central's resets, by consumer (see
	// above); one pending of each is enough.
	answered := make(chan int, len(consumers))
	resets := make(chan int, len(consumers))
	for i, c := range consumers {
		listen(flowControlReplies(c.stream), func(m *nats.Msg) {
			c.tap.answered(m.Subject)
			if stallAnswer(m) {
				poke(answered, i)
			}
		})
		listen(resetAnswers(p.cfg.Site, c.stream), func(m *nats.Msg) {
			if resetAnswer(m) {
				poke(resets, i)
			}
		})
	}
	js, err := jetstream.New(nc)
	if err != nil {
		p.log.Error("peer source keeper: JetStream", "account", acc.Name, "err", err)
		return
	}
	k := newKeeper(p.cfg.Cluster.Listen != "", p.now())
	// This member's own link, since when, for status (bus.PeerLinks).
	var link atomic.Pointer[bus.PeerLink]
	link.Store(&bus.PeerLink{Peer: p.cfg.Name, State: bus.LinkDown, Since: p.now()})
	listen(bus.LinkStateSubject(p.cfg.Site), func(m *nats.Msg) {
		if b, err := json.Marshal(link.Load()); err == nil {
			_ = m.Respond(b)
		}
	})
	t := time.NewTicker(keepPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case i := <-answered:
			c := consumers[i]
			// The link as it is now: a stall answer that came over it
			// may come before the look that would see it up.
			if !shouldPrompt(centralLinked(acc), c.keeper != nil, acc.JetStreamIsConsumerLeader(c.stream, c.name)) {
				continue
			}
			if raised, err := withKeepTimeout(ctx, js, c.stream, bus.PromptSourceConsumer); err != nil {
				p.log.Warn("peer source keeper: prompting the source consumer", "account", acc.Name, "consumer", c.name, "err", err)
			} else if raised {
				c.raised = true
				p.log.Debug("peer source keeper: central answered a stall; the source consumer asks for flow control at once", "account", acc.Name, "consumer", c.name)
			}
			continue
		case i := <-resets:
			c := consumers[i]
			reply := c.tap.take()
			if reply == "" {
				p.log.Debug("peer source keeper: central reset the source consumer; no flow-control request out", "account", acc.Name, "consumer", c.name)
				continue
			}
			// A keeper still subscribed (its look not yet made since the
			// link returned) would take what the answer lets the
			// consumer deliver, before central subscribes again; central
			// takes its first delivery after a reset as where it is, and
			// would skip those. It leaves first: the reset came over the
			// link.
			if c.keeper != nil {
				_ = c.keeper.Unsubscribe()
				c.keeper = nil
			}
			unstall(nc, reply)
			p.log.Debug("peer source keeper: central reset the source consumer; answered the flow-control request it had out", "account", acc.Name, "consumer", c.name)
			continue
		case <-t.C:
		}
		for _, c := range consumers {
			if c.raised {
				done, err := withKeepTimeout(ctx, js, c.stream, bus.RestoreSourceConsumer)
				if err != nil {
					// Not tried again: the peer's next start sets it.
					p.log.Warn("peer source keeper: setting the source consumer's limit back", "account", acc.Name, "consumer", c.name, "err", err)
				}
				c.raised = !done && err == nil
			}
		}
		// Observe.
		snap := keeperSnapshot{linked: centralLinked(acc), beacon: beaconSub != nil}
		if state := linkState(snap.linked); state != link.Load().State {
			link.Store(&bus.PeerLink{Peer: p.cfg.Name, State: state, Since: p.now()})
		}
		for _, c := range consumers {
			snap.consumers = append(snap.consumers, consumerState{
				leads: acc.JetStreamIsConsumerLeader(c.stream, c.name),
				kept:  c.keeper != nil,
			})
		}
		// The tap is on exactly while this member leads the consumer.
		for i, c := range consumers {
			if err := c.tap.follow(nc, bus.SourceDeliverSubject(p.cfg.Site, c.stream), snap.consumers[i].leads && !p.untapped); err != nil {
				p.log.Warn("peer source keeper: subscribe", "stream", c.stream, "err", err)
			}
		}
		// Decide, and act.
		for _, a := range k.decide(snap, p.now()) {
			switch a.kind {
			case beaconOn:
				var err error
				if beaconSub, err = nc.Subscribe(beacon, func(m *nats.Msg) { _ = m.Respond(nil) }); err != nil {
					p.log.Warn("peer source keeper: subscribe", "subject", beacon, "err", err)
				}
			case beaconOff:
				_ = beaconSub.Unsubscribe()
				beaconSub = nil
			case keepOn:
				c := consumers[a.consumer]
				p.log.Debug("peer source keeper: central's JetStream is out of reach; keeping the source consumer", "account", acc.Name, "consumer", c.name)
				s, err := keepConsumer(nc, bus.SourceDeliverSubject(p.cfg.Site, c.stream))
				if err != nil {
					p.log.Warn("peer source keeper: subscribe", "stream", c.stream, "err", err)
					continue
				}
				c.keeper = s
			case keepOff:
				c := consumers[a.consumer]
				p.log.Debug("peer source keeper: leaving the source consumer", "account", acc.Name, "consumer", c.name,
					"linked", snap.linked, "leads", snap.consumers[a.consumer].leads)
				_ = c.keeper.Unsubscribe()
				c.keeper = nil
			case handOff:
				c := consumers[a.consumer]
				if !anotherLinked(nc, beacon) {
					continue
				}
				if err := bus.StepDownConsumer(nc, c.stream, c.name); err != nil {
					p.log.Warn("peer source keeper: this member's link to central is down; handing the source consumer to a linked member", "consumer", c.name, "err", err)
				} else {
					p.log.Info("peer source keeper: this member's link to central is down; handed the source consumer to a linked member", "account", acc.Name, "consumer", c.name)
				}
			}
		}
	}
}

// poke sends i on ch unless ch is full.
func poke(ch chan<- int, i int) {
	select {
	case ch <- i:
	default:
	}
}

// linkState is a link's state for status: up or down.
func linkState(linked bool) string {
	if linked {
		return bus.LinkUp
	}
	return bus.LinkDown
}

// keptConsumer is a source consumer the keeper looks after.
type keptConsumer struct {
	stream, name string
	keeper       *nats.Subscription // while it is kept
	raised       bool               // prompted, its limit not set back yet
	tap          *flowControlTap
}

// flowControlTap notes the flow-control request a source consumer has out
// (see keepAccount). Its subscription's goroutine, the flow-control
// replies' and the keeper's loop use it.
type flowControlTap struct {
	mu  sync.Mutex
	sub *nats.Subscription // while this member leads the consumer
	out string             // the reply of the request out, "" if none
}

// tapQueue is the queue group of the taps' subscriptions: a consumer
// without a deliver group takes only plain subscriptions for interest, so
// a tap never makes it deliver (see keepAccount).
const tapQueue = "meshmon-flow-control-tap"

// follow starts the tap on subject, or stops it, as on says.
func (t *flowControlTap) follow(nc *nats.Conn, subject string, on bool) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case on && t.sub == nil:
		sub, err := nc.QueueSubscribe(subject, tapQueue, func(m *nats.Msg) {
			switch kind, reply := classifyDelivery(m); kind {
			case deliveryFlowControl, deliveryStalled:
				t.mu.Lock()
				t.out = reply
				t.mu.Unlock()
			}
		})
		if err != nil {
			return err
		}
		t.sub = sub
	case !on && t.sub != nil:
		_ = t.sub.Unsubscribe()
		t.sub, t.out = nil, ""
	}
	return nil
}

// answered notes a flow-control reply heard, to subject.
func (t *flowControlTap) answered(subject string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if subject == t.out {
		t.out = ""
	}
}

// take returns the request out, if any, as answered.
func (t *flowControlTap) take() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := t.out
	t.out = ""
	return out
}

// shouldPrompt reports whether a stall answer prompts a consumer (see
// keepAccount): only while the link is up (a cut's stalls are the
// keeper's), never one being kept, and only by its leader. Every answer
// does, whichever site's consumer it was for: an answer to another's
// heard just before this consumer's own must not hold this one's back
// (with one prompt a second, one site in three waited for its heartbeat
// still), and a prompt of a consumer whose own request stands costs only
// one delivery.
func shouldPrompt(linked, kept, leads bool) bool {
	return linked && !kept && leads
}

// withKeepTimeout calls f (bus.PromptSourceConsumer or
// bus.RestoreSourceConsumer) with the keeper's own deadline: the keeper's
// loop waits on it.
func withKeepTimeout(ctx context.Context, js jetstream.JetStream, stream string, f func(context.Context, jetstream.JetStream, string) (bool, error)) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, keepRequestTimeout)
	defer cancel()
	return f(ctx, js, stream)
}

// keepRequestTimeout bounds each of the keeper's requests to its server.
const keepRequestTimeout = 2 * time.Second

// keeperSnapshot is what the keeper observes in one look.
type keeperSnapshot struct {
	// linked: this member's link to central is up.
	linked bool
	// beacon: this member answers on its site's link beacon.
	beacon bool
	// consumers: each source consumer, in a fixed order.
	consumers []consumerState
}

// consumerState is what the keeper observes of one source consumer.
type consumerState struct {
	leads bool // this member leads it
	kept  bool // this member keeps it (a keeper is subscribed)
}

// keeperActionKind is what a keeperAction does.
type keeperActionKind int

const (
	beaconOn  keeperActionKind = iota // answer on the link beacon
	beaconOff                         // stop answering on it
	keepOn                            // start a keeper on the consumer
	keepOff                           // stop the consumer's keeper
	handOff                           // hand the consumer to a linked member, if one answers on the beacon
)

// keeperAction is one thing the keeper does after a look.
type keeperAction struct {
	kind     keeperActionKind
	consumer int // index in keeperSnapshot.consumers; not for beacon actions
}

// keeper is what the keeper decides with: its memory of what it saw
// before. decide does no I/O and reads no clock. One goroutine uses it.
type keeper struct {
	clustered bool
	// wasLinked: the link has been up since the keeper started. A consumer
	// starts unstalled: only a link lost since is kept for.
	wasLinked bool
	// unlinkedSince: when the link was last seen up; links come up in the
	// first moments, so it starts handoffStartGrace ahead.
	unlinkedSince time.Time
	// handoffTried: when each consumer (by index) was last handed on.
	handoffTried map[int]time.Time
}

// newKeeper returns the keeper of a member started at now.
func newKeeper(clustered bool, now time.Time) *keeper {
	return &keeper{clustered: clustered, unlinkedSince: now.Add(handoffStartGrace), handoffTried: map[int]time.Time{}}
}

// decide takes the snapshot taken at now and returns what to do (see
// keepAccount for the rules).
func (k *keeper) decide(snap keeperSnapshot, now time.Time) []keeperAction {
	var out []keeperAction
	if snap.linked {
		k.wasLinked = true
		k.unlinkedSince = now
	}
	if k.clustered {
		switch {
		case snap.linked && !snap.beacon:
			out = append(out, keeperAction{kind: beaconOn})
		case !snap.linked && snap.beacon:
			out = append(out, keeperAction{kind: beaconOff})
		}
	}
	for i, c := range snap.consumers {
		keep := !snap.linked && k.wasLinked && c.leads
		switch {
		case keep && !c.kept:
			out = append(out, keeperAction{kind: keepOn, consumer: i})
		case !keep && c.kept:
			out = append(out, keeperAction{kind: keepOff, consumer: i})
		}
		if k.clustered && c.leads && !snap.linked && now.Sub(k.unlinkedSince) >= handoffAfter && now.Sub(k.handoffTried[i]) >= handoffEvery {
			k.handoffTried[i] = now
			out = append(out, keeperAction{kind: handOff, consumer: i})
		}
	}
	return out
}

// A member that leads a source consumer while its own link is down hands
// it on once the link has been down handoffAfter (not for a blip), and
// again at most every handoffEvery (the next leader may have no link
// either); a member whose link has not come up yet waits handoffStartGrace
// more.
const (
	handoffAfter      = time.Second
	handoffEvery      = 5 * time.Second
	handoffStartGrace = 5 * time.Second
)

// linkBeacon is the subject each member of a site cluster answers on while
// its link to central is up (a member's own link's interest does not cross
// the site's routes, but its subscriptions do).
func linkBeacon(site string) string { return "meshmon.link." + site }

// anotherLinked asks the other members of the site whether one of them is
// linked to central. It asks rather than looks at interest, since a client
// of the site that subscribes to ">" is interest too.
func anotherLinked(nc *nats.Conn, beacon string) bool {
	_, err := nc.Request(beacon, nil, 500*time.Millisecond)
	return err == nil
}

// keepConsumer starts a keeper on a consumer's deliver subject (see
// keepAccount).
func keepConsumer(nc *nats.Conn, subject string) (*nats.Subscription, error) {
	delivered := false // since the last flow-control request; one goroutine
	// Not a queue group: a consumer without one ignores their interest. In
	// a site of several peers each keeper answers; a consumer takes the
	// first reply to a request and ignores the others.
	return nc.Subscribe(subject, func(m *nats.Msg) {
		kind, reply := classifyDelivery(m)
		switch kind {
		case deliveryFlowControl:
			unstall(nc, reply)
			if !delivered {
				_ = m.Sub.Unsubscribe() // idle and unstalled: leave
			}
			delivered = false
		case deliveryMessage:
			delivered = true
		case deliveryStalled:
			unstall(nc, reply)
		}
	})
}
