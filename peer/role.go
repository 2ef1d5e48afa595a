package peer

import (
	"context"
	"fmt"

	"github.com/nats-io/nats-server/v2/server"
)

// A role is what a peer of one kind does that a peer of another kind does
// not. There are four kinds, by Config.Role and by mode: a peer with its
// own users (Config.Auth), or one in operator mode, whose users come from
// the operator's accounts (central with Trust, a site with Tenants):
//
//	          own users      operator mode
//	site      siteRole       siteTenantsRole
//	central   centralRole    centralTrustRole
//
// New resolves the kind once (roleOf); Start runs the same steps for every
// kind and calls the role where kinds differ. A nil func does nothing.
type role struct {
	// load reads what the role keeps in the data dir, once Start has
	// locked it.
	load func()
	// accounts sets the server's accounts, and the users that log into
	// them (in: the peer's own, for its in-process connections).
	accounts func(c Config, o *server.Options, in *internalAuth) error
	// leaf sets the server's leaf links: central's listener, or a site's
	// links to central (k: the peer's certificate, nil without TLS).
	leaf func(c Config, o *server.Options, k *certs) error
	// apply readies the server's accounts before it starts: nothing (a
	// leaf link, a client) can look an account up before apply has.
	apply func(srv *server.Server) error
	// ensure makes the role's streams and buckets on a single peer, at
	// start (p.srv is set, p.mu is held). maintain makes them on a cluster
	// member, in the background, and closes streamsReady once they exist.
	// Both are nil for a role without streams of its own.
	ensure   func(ctx context.Context) error
	maintain func(ctx context.Context)
	// background are the role's supervisors, run from Start until Close.
	background []func(context.Context)
	// readyLog is what the log says once the peer is ready, past the
	// name, role, domain and URL every kind gives.
	readyLog func() (msg string, attrs []any)
}

// roleOf resolves the role of p's Config (which Validate checked: Trust
// only at central, Tenants only at a site).
func (p *Peer) roleOf() role {
	switch {
	case p.cfg.Role == RoleCentral && p.cfg.Trust != "":
		return p.centralTrustRole()
	case p.cfg.Role == RoleCentral:
		return p.centralRole()
	case len(p.cfg.Tenants) > 0:
		return p.siteTenantsRole()
	}
	return p.siteRole()
}

// siteRole is a site peer with its own users: one account, its streams
// there, and, with Central, one leaf link to central and the keeper of the
// consumers central sources through.
func (p *Peer) siteRole() role {
	r := role{
		accounts: Config.ownAccounts,
		leaf:     Config.siteLeaf,
		ensure:   p.ensureOwn,
		maintain: p.maintain,
		readyLog: p.ownReadyLog,
	}
	if len(p.cfg.Central) > 0 {
		r.background = append(r.background, p.keepSourceConsumers)
	}
	return r
}

// siteTenantsRole is a site peer in operator mode (sitetenants.go): each
// tenant's account, with its streams and its own leaf link to central,
// following the tenant's account at central.
func (p *Peer) siteTenantsRole() role {
	return role{
		load: func() { p.cfg.Tenants = p.cfg.withFollowed(p.log) },
		accounts: func(c Config, o *server.Options, _ *internalAuth) error {
			return c.siteOperatorOptions(o)
		},
		leaf:       Config.tenantsLeaf,
		apply:      p.applyTenants,
		ensure:     p.ensureTenants,
		maintain:   p.maintainTenants,
		background: []func(context.Context){p.followTenants, p.keepSourceConsumers},
		readyLog: func() (string, []any) {
			names := make([]string, len(p.cfg.Tenants))
			for i, t := range p.cfg.Tenants {
				names[i] = t.Name
			}
			return "peer ready in operator mode", []any{"tenants", names, "data_dir", p.cfg.DataDir}
		},
	}
}

// centralRole is a central peer with its own users: one account, the
// streams that source every site there, the listener sites dial in on, the
// watch over the sources, and, in a cluster, the removal of members.
func (p *Peer) centralRole() role {
	r := role{
		accounts:   Config.ownAccounts,
		leaf:       Config.centralLeaf,
		ensure:     p.ensureOwn,
		maintain:   p.maintain,
		background: []func(context.Context){p.watchSources, p.superviseTenants},
		readyLog:   p.ownReadyLog,
	}
	if p.cfg.Cluster.Clustered() {
		r.background = append(r.background, p.servePeerAdmin)
	}
	return r
}

// centralTrustRole is a central peer in operator mode (trust.go): the
// tenants' accounts come through the resolver, and their streams are made
// by meshmon tenant create, in their accounts; the peer has none of its
// own. Its source watch acts in each tenant's account (centralSigner).
func (p *Peer) centralTrustRole() role {
	return role{
		accounts: func(c Config, o *server.Options, _ *internalAuth) error {
			return c.operatorOptions(o)
		},
		apply:      p.applyCentralClaims,
		leaf:       Config.centralLeaf,
		background: []func(context.Context){p.keepCentralClaims, p.watchSources, p.superviseTenants},
		readyLog: func() (string, []any) {
			return "peer ready in operator mode; tenants come through the resolver", []any{"cluster", p.cfg.ClusterName(), "resolver", p.cfg.ResolverDir()}
		},
	}
}

// ownReadyLog is the ready line of a peer with its own users.
func (p *Peer) ownReadyLog() (string, []any) {
	if p.cfg.Cluster.Clustered() {
		return "peer ready; its streams follow once the cluster has a JetStream quorum", []any{"cluster", p.cfg.ClusterName()}
	}
	return "peer ready", []any{"data_dir", p.cfg.DataDir}
}

// ensureTenants makes every tenant's streams, buckets and source consumers
// (a single site peer in operator mode, at start). The site's claims are in
// force already: applyTenants put them there before the server started, so
// no leaf link could look a tenant's account up first and put the
// resolver's JWT back over them (nats-server 2.15.3 fetchAccount: "Due to
// possible race ... Update with the new claims"), which dropped the site's
// signing key, and the revocations and key drops with it.
func (p *Peer) ensureTenants(ctx context.Context) error {
	for _, t := range p.cfg.Tenants {
		if err := p.ensureTenant(ctx, p.srv, t); err != nil {
			return fmt.Errorf("tenant %s: %w", t.Name, err)
		}
	}
	return nil
}
