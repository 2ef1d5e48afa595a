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
			return t.upkeepConn(srv, "meshmon-peer-keeper-"+t.Name)
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

// keepAccount keeps the source consumers of one account clear of a stall
// on flow control while the site's link to central is down, so that
// central's sources resume the moment it returns.
//
// Cut silently, the link looks up until its pings fail (up to 20 s), and a
// consumer sends its deliveries, and a flow-control request, into the
// cut. It then stays stalled on that request, which nobody will answer:
// when the link returns it delivers nothing, even from where central asks
// it to start again, until central answers the stall its next heartbeat
// names (nats-server 2.15.2), a second or two later.
//
// So once central's JetStream is out of reach, a keeper subscribes to each
// consumer's deliver subject and answers each flow-control request and
// each stall with an empty reply, as JetStream answers a stall: that
// acknowledges nothing, so what central did not store is delivered again
// when its source asks. The consumer delivers to the keeper what it has
// (up to its acknowledgement limit) and then, idle, asks for flow control
// at its next heartbeat; the keeper answers that and leaves, so the
// consumer waits, unstalled, for central. A keeper still there when the
// link returns leaves then.
func (p *Peer) keepAccount(ctx context.Context, nc *nats.Conn, acc *server.Account) {
	centralAPI := "$JS." + bus.HubDomain + ".API.INFO"
	var keepers []*nats.Subscription // while the link is down
	// A consumer starts unstalled: only a link lost since is kept for.
	wasLinked := false
	leave := func() {
		for _, s := range keepers {
			_ = s.Unsubscribe()
		}
		keepers = nil
	}
	defer leave()
	t := time.NewTicker(keepPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		linked := acc.SubscriptionInterest(centralAPI)
		switch {
		case linked:
			wasLinked = true
			if keepers != nil {
				p.log.Debug("peer source keeper: central is back; leaving the source consumers to it", "account", acc.Name)
				leave()
			}
		case wasLinked && keepers == nil:
			p.log.Debug("peer source keeper: central's JetStream is out of reach; keeping the source consumers", "account", acc.Name)
			for _, stream := range []string{bus.EventsStream, bus.MetricsStream} {
				s, err := keepConsumer(nc, bus.SourceDeliverSubject(p.cfg.Site, stream))
				if err != nil {
					p.log.Warn("peer source keeper: subscribe", "stream", stream, "err", err)
					continue
				}
				keepers = append(keepers, s)
			}
		}
	}
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
