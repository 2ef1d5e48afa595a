package peer

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

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
// A consumer delivers to central only over its leader's own link (a leaf
// link's interest does not cross the site's routes). So in a site cluster
// a member that leads a consumer while its link is down, and sees another
// member's link up (anotherLinked), steps down from it for another member
// to lead, trying at most once every handoffEvery.
func (p *Peer) keepAccount(ctx context.Context, nc *nats.Conn, acc *server.Account) {
	centralAPI := "$JS." + bus.HubDomain + ".API.INFO"
	clustered := p.cfg.Cluster.Listen != ""
	beacon := linkBeacon(p.cfg.Site)
	var beaconSub *nats.Subscription // while this member's link is up
	type consumer struct {
		stream, name string
		keeper       *nats.Subscription // while it is kept
		handoffTried time.Time
	}
	consumers := []*consumer{
		{stream: bus.EventsStream, name: bus.SourceConsumer(bus.EventsStream)},
		{stream: bus.MetricsStream, name: bus.SourceConsumer(bus.MetricsStream)},
	}
	// A consumer starts unstalled: only a link lost since is kept for.
	wasLinked := false
	// Links come up in the first moments: no handoff before then.
	unlinkedSince := time.Now().Add(handoffStartGrace)
	defer func() {
		for _, c := range consumers {
			if c.keeper != nil {
				_ = c.keeper.Unsubscribe()
			}
		}
		if beaconSub != nil {
			_ = beaconSub.Unsubscribe()
		}
	}()
	t := time.NewTicker(keepPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		linked := acc.SubscriptionInterest(centralAPI)
		if linked {
			wasLinked = true
			unlinkedSince = now
		}
		if clustered {
			switch {
			case linked && beaconSub == nil:
				var err error
				if beaconSub, err = nc.Subscribe(beacon, func(m *nats.Msg) { _ = m.Respond(nil) }); err != nil {
					p.log.Warn("peer source keeper: subscribe", "subject", beacon, "err", err)
				}
			case !linked && beaconSub != nil:
				_ = beaconSub.Unsubscribe()
				beaconSub = nil
			}
		}
		for _, c := range consumers {
			leads := acc.JetStreamIsConsumerLeader(c.stream, c.name)
			keep := !linked && wasLinked && leads
			switch {
			case keep && c.keeper == nil:
				p.log.Debug("peer source keeper: central's JetStream is out of reach; keeping the source consumer", "account", acc.Name, "consumer", c.name)
				s, err := keepConsumer(nc, bus.SourceDeliverSubject(p.cfg.Site, c.stream))
				if err != nil {
					p.log.Warn("peer source keeper: subscribe", "stream", c.stream, "err", err)
					continue
				}
				c.keeper = s
			case !keep && c.keeper != nil:
				p.log.Debug("peer source keeper: leaving the source consumer", "account", acc.Name, "consumer", c.name, "linked", linked, "leads", leads)
				_ = c.keeper.Unsubscribe()
				c.keeper = nil
			}
			if clustered && leads && !linked && now.Sub(unlinkedSince) >= handoffAfter && now.Sub(c.handoffTried) >= handoffEvery {
				c.handoffTried = now
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
		switch {
		case strings.HasPrefix(m.Reply, "$JS.FC."):
			_ = nc.Publish(m.Reply, nil)
			if !delivered {
				_ = m.Sub.Unsubscribe() // idle and unstalled: leave
			}
			delivered = false
		case strings.HasPrefix(m.Reply, "$JS.ACK."):
			delivered = true
		case m.Header.Get(stalledHeader) != "":
			_ = nc.Publish(m.Header.Get(stalledHeader), nil)
		}
	})
}

// stalledHeader is the header of a consumer's heartbeat that names the
// flow-control request it is stalled on.
const stalledHeader = "Nats-Consumer-Stalled"
