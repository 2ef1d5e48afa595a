package peer

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/bus"
)

// StreamsReady is closed once the peer's streams and buckets exist: at the
// end of Start for a single peer, later for a cluster member (once the
// cluster has a JetStream quorum).
func (p *Peer) StreamsReady() <-chan struct{} { return p.streamsReady }

// ensure creates what the peer's role keeps in JetStream (p.srv is set; p.mu
// may be held): for central the
// sourcing streams, the sites and join buckets and this peer's leaf URL; for
// a site its streams and buckets and, when it has a link to central, the
// consumers central sources through.
func (p *Peer) ensure(ctx context.Context, js jetstream.JetStream) error {
	lim, err := p.fitLimits(ctx, js, p.cfg.Limits) // limits.go
	if err != nil {
		return err
	}
	if p.cfg.Role == RoleCentral {
		if err := bus.EnsureCentral(ctx, js, lim); err != nil {
			return err
		}
		if p.cfg.LeafListen == "" {
			return nil
		}
		info := bus.JoinInfo{Tenant: p.cfg.Tenant, Central: []string{p.leafURL(p.srv)}, User: p.cfg.LeafUser, Password: p.cfg.LeafPassword}
		if p.cfg.TLS.On() {
			b, err := os.ReadFile(p.cfg.TLS.CA)
			if err != nil {
				return fmt.Errorf("tls ca: %w", err)
			}
			info.CA = string(b)
		}
		return bus.PublishJoin(ctx, js, p.cfg.Name, info)
	}
	if err := bus.EnsureStreams(ctx, js, lim); err != nil {
		return err
	}
	if len(p.cfg.Central) > 0 {
		return bus.EnsureSourceConsumers(ctx, js, p.cfg.Site)
	}
	return nil
}

// ensureOwn makes the streams of a single peer with its own users, at
// start, over an in-process connection as the peer's own user (p.srv and
// p.internal are set; p.mu is held, so not InProcessConn).
func (p *Peer) ensureOwn(ctx context.Context) error {
	nc, err := nats.Connect("", nats.InProcessServer(p.srv), p.internal.connOption(), nats.Name("meshmon-peer"))
	if err != nil {
		return fmt.Errorf("in-process connection: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if err := bus.WaitJetStream(ctx, js); err != nil {
		return fmt.Errorf("%w: %w", ErrNotReady, err)
	}
	return p.ensure(ctx, js)
}

// LeafURL is the URL sites dial to reach this central peer: LeafAdvertise,
// else the leaf listen address with the port actually bound (and the host
// name for a wildcard host). It is empty for a peer that takes no sites.
func (p *Peer) LeafURL() string { return p.leafURL(p.Server()) }

// leafURL is LeafURL for srv; it does not take p.mu, which Start holds.
func (p *Peer) leafURL(srv *server.Server) string {
	if p.cfg.LeafAdvertise != "" {
		return "nats-leaf://" + p.cfg.LeafAdvertise
	}
	if p.cfg.LeafListen == "" {
		return ""
	}
	host, port, _ := net.SplitHostPort(p.cfg.LeafListen)
	if srv != nil {
		if vz, err := srv.Varz(nil); err == nil && vz.LeafNode.Port > 0 {
			port = strconv.Itoa(vz.LeafNode.Port)
		}
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		if h, err := os.Hostname(); err == nil {
			host = h
		}
	}
	return "nats-leaf://" + net.JoinHostPort(host, port)
}

// maintain is a cluster member's upkeep, until ctx is done: it makes the
// role's streams once JetStream answers, then scales them to three replicas
// once three members are up (never down: losing a member must not shrink
// what the others keep).
func (p *Peer) maintain(ctx context.Context) {
	nc, err := p.InProcessConn(nats.Name("meshmon-peer-upkeep"))
	if err != nil {
		p.log.Error("peer upkeep: in-process connection", "err", err)
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		p.log.Error("peer upkeep", "err", err)
		return
	}
	ensured := false
	var lastErr string
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for tick := 0; ; tick++ {
		// Ensuring is idempotent, and in a fresh cluster a request sent
		// just after the JetStream leader is elected can go unanswered:
		// a short timeout retries it sooner (a 10 s one cost a
		// three-member central 30 s to start, seen in the compose test).
		ectx, ecancel := context.WithTimeout(ctx, ensureTimeout)
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if !ensured {
			err := p.ensure(ectx, js)
			switch {
			case err == nil:
				ensured = true
				close(p.streamsReady)
				p.log.Info("peer streams ready", "name", p.cfg.Name, "domain", p.cfg.Domain())
			case ctx.Err() == nil && err.Error() != lastErr:
				lastErr = err.Error()
				p.log.Info("peer streams not ready yet (waiting for a JetStream quorum?)", "err", err)
			}
		}
		if ensured {
			if err := p.scale(actx, js); err != nil && ctx.Err() == nil && err.Error() != lastErr {
				lastErr = err.Error()
				p.log.Warn("scale streams", "err", err)
			}
			if tick%forgetEvery == 0 {
				p.forgetRemoved(actx, js)
			}
		}
		cancel()
		ecancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// forgetEvery is how many upkeep ticks pass between two looks for join
// entries of removed members (see forgetRemoved).
const forgetEvery = 5

// forgetRemoved, on the meta leader of a clustered central, deletes the join
// entries of peers that are no longer members of the cluster: the removal
// deletes the entry itself, but that delete can fail while the bucket moves
// its replica off the removed peer, and a site added later must not be told
// to dial a peer that is gone.
func (p *Peer) forgetRemoved(ctx context.Context, js jetstream.JetStream) {
	if p.cfg.Role != RoleCentral || p.cfg.LeafListen == "" || !p.cfg.Cluster.Clustered() {
		return
	}
	members := p.metaMembers()
	if len(members) == 0 {
		return
	}
	forgot, err := bus.ForgetJoinExcept(ctx, js, members)
	for _, name := range forgot {
		p.log.Info("join entry of a removed peer deleted", "removed", name)
	}
	if err != nil && ctx.Err() == nil {
		p.log.Warn("delete the join entry of a removed peer", "err", err)
	}
}

// metaMembers is every member of the peer's JetStream cluster, up or not,
// when this peer is its meta leader; nil otherwise (only the leader's view
// of the members is authoritative).
func (p *Peer) metaMembers() []string {
	srv := p.Server()
	if srv == nil {
		return nil
	}
	jsz, err := srv.Jsz(nil)
	if err != nil || jsz.Meta == nil || jsz.Meta.Leader != p.cfg.Name || len(jsz.Meta.Replicas) == 0 {
		return nil
	}
	members := []string{jsz.Meta.Leader}
	for _, r := range jsz.Meta.Replicas {
		members = append(members, r.Name)
	}
	return members
}

// ensureTimeout bounds one attempt of a cluster member's upkeep to make its
// streams (see maintain).
const ensureTimeout = 4 * time.Second

// ownStreams are the streams (buckets included) a peer of the role keeps.
func (p *Peer) ownStreams() []string {
	if p.cfg.Role == RoleCentral {
		return []string{bus.EventsStream, bus.MetricsStream, "KV_" + bus.SitesBucket, "KV_" + bus.CentralBucket}
	}
	return []string{bus.EventsStream, bus.MetricsStream, "KV_" + bus.DevicesBucket, "KV_" + bus.PollersBucket, "KV_" + bus.GroupBucket}
}

// scale raises the role's streams to three replicas when three members of
// the cluster are up.
func (p *Peer) scale(ctx context.Context, js jetstream.JetStream) error {
	if p.MembersUp() < 3 {
		return nil
	}
	for _, name := range p.ownStreams() {
		scaled, err := bus.ScaleStream(ctx, js, name, 3)
		if err != nil {
			return fmt.Errorf("scale %s to 3 replicas: %w", name, err)
		}
		if scaled {
			p.log.Info("stream scaled to 3 replicas", "stream", name)
		}
	}
	return nil
}

// MembersUp is how many members of the peer's JetStream cluster are up, as
// the meta leader sees them; 1 for a peer that is not clustered, 0 when it
// does not know (no leader yet, or it is not the leader and has no view).
func (p *Peer) MembersUp() int {
	srv := p.Server()
	if srv == nil {
		return 0
	}
	if !p.cfg.Cluster.Clustered() {
		return 1
	}
	jsz, err := srv.Jsz(nil)
	if err != nil || jsz.Meta == nil || jsz.Meta.Leader == "" {
		return 0
	}
	up := 1 // the leader itself
	for _, r := range jsz.Meta.Replicas {
		if !r.Offline && r.Current {
			up++
		}
	}
	if jsz.Meta.Leader != p.cfg.Name && len(jsz.Meta.Replicas) == 0 {
		return 0
	}
	return up
}
