package peer

import (
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/meshmon/meshmon/bus"
)

// leafDenyImports are subjects a site never takes from central over its
// leaf link: other sites' events, samples and key-value writes, central's
// stored feed, and the source consumers' deliver subjects (central sends
// the site nothing there, and so the site's own subscriptions to them, the
// keeper's, stay at the site: peer.keepAccount). Sourcing (JetStream API
// requests in the site's domain and flow control) still crosses.
var leafDenyImports = []string{"ev.>", "mx.>", "$KV.>", bus.StoredPrefix + ">", bus.SourceDeliverPrefix + ">"}

// leafDenyExports are subjects a site never sends central: its own stored
// feed (central republishes what it stores of the site).
var leafDenyExports = []string{bus.StoredPrefix + ">"}

// DefaultLeafDialTimeout bounds one attempt of a site to reach central: a
// TCP handshake across a WAN takes one round trip, well under this (raise it
// with Config.LeafDialTimeout for satellite links).
const DefaultLeafDialTimeout = 500 * time.Millisecond

// How a peer finds a dead connection: after pingsOut pings unanswered, one
// sent every pingInterval while nothing comes in (15-20 s).
const (
	pingInterval = 5 * time.Second
	pingsOut     = 3
)

// serverOptions builds the nats-server options of the peer: the accounts,
// users and leaf links of its role, and what every peer has.
//
// With p.certs (the peer's certificate) every listener is TLS: clients and
// the leaf listener get the certificate; the route port is mutual TLS
// against the mesh's CA both ways. A site's link to central verifies
// central against CentralCA (or the CA of the certificate). The HTTP
// monitor is not nats-server's (see monitor.go).
func (p *Peer) serverOptions() (*server.Options, error) {
	o := &server.Options{}
	if err := p.role.accounts(p.cfg, o, p.internal); err != nil {
		return nil, err
	}
	p.cfg.baseOptions(o, p.certs)
	p.cfg.clusterOptions(o, p.certs)
	if err := p.role.leaf(p.cfg, o, p.certs); err != nil {
		return nil, err
	}
	return o, nil
}

// ownAccounts is the accounts of a peer with its own users: the tenant is
// a NATS account with JetStream enabled (there is no exported field for
// that, so that part goes through the server's config parser, as DESIGN.md
// notes); every user, the peer's own (in), the leaf credential and the
// leaf link are bound to it.
func (c Config) ownAccounts(o *server.Options, in *internalAuth) error {
	if err := o.ProcessConfigString(fmt.Sprintf(`accounts: { %s: { jetstream: enabled }, "%s": {} }, system_account: "%s"`,
		c.Tenant, server.DEFAULT_SYSTEM_ACCOUNT, server.DEFAULT_SYSTEM_ACCOUNT)); err != nil {
		// (The tenant name is a validated subject token: safe in the
		// config. The system account is the server's default one, named so
		// that the peer's own system user can be bound to it.)
		return fmt.Errorf("tenant account: %w", err)
	}
	applyAuth(o, c.Auth, in, account(o, c.Tenant), account(o, server.DEFAULT_SYSTEM_ACCOUNT))
	return nil
}

// account is the account of o named name; nil for none.
func account(o *server.Options, name string) *server.Account {
	for _, a := range o.Accounts {
		if a.Name == name {
			return a
		}
	}
	return nil
}

// baseOptions sets what every peer's server has: its name and client
// listener, JetStream and its store, pings, and TLS with k.
// MaxControlLine is the longest protocol line a peer takes from a client
// (nats-server's max_control_line; its default is 4 KiB).
const MaxControlLine = 16 << 10

func (c Config) baseOptions(o *server.Options, k *certs) {
	host, port := hostPort(c.Listen)
	o.ServerName = c.Name
	o.Host, o.Port = host, port
	o.JetStream = true
	o.JetStreamDomain = c.Domain()
	o.StoreDir = c.StoreDir()
	o.JetStreamMaxMemory = c.MaxMemory
	o.JetStreamMaxStore = c.MaxStore
	o.SyncAlways = c.SyncAlways
	o.NoSigs = true // the process owns its signals
	// The replies to JetStream's own requests to another domain (central's
	// sources asking a site for its consumer) name the domain, stream and
	// consumer: $JSC.R.<site>.<account hash>.<stream>.<consumer>.<id>, not
	// $JSC.R.<id>. A site's leaf user may then answer its own sources'
	// requests only (tenancy.RoleLeaf), and central's source watch can
	// tell which source a request is out for (pendingSourceRequests).
	o.FeatureFlags = map[string]bool{server.FeatureFlagJsAPIReplyFormatV2: true}
	// A user's JWT travels in its CONNECT line: a NOC's (consumer names,
	// alarm actions, denials of the secret buckets) with 63-character
	// names passes nats-server's default 4 KiB (TestPermissionsFitConnect).
	o.MaxControlLine = MaxControlLine
	// A leaf link that dies silently (a WAN cut that drops packets rather
	// than resetting connections) is closed after pingsOut unanswered
	// pings, on each side: central then stops counting the site as
	// reachable (see watchSources), and nothing central sends the site
	// goes into a dead connection. NATS's default, 2 minutes and 2 pings,
	// kept a cut site's link open at central for the whole of a 2-minute
	// cut.
	o.PingInterval, o.MaxPingsOut = pingInterval, pingsOut
	if k != nil {
		o.TLSConfig = k.server()
		o.TLSTimeout = tlsTimeout
	}
}

// clusterOptions makes a cluster member's routes, mutual TLS with k.
func (c Config) clusterOptions(o *server.Options, k *certs) {
	if !c.Cluster.Clustered() {
		return
	}
	o.Cluster.Name = c.ClusterName()
	o.Cluster.Host, o.Cluster.Port = hostPort(c.Cluster.Listen)
	if len(c.Cluster.Routes) > 0 {
		// (RoutesFromStr of "" is one route to an empty address,
		// which a member started without routes dialled for ever,
		// "missing port in address", and its JetStream never came.)
		o.Routes = server.RoutesFromStr(strings.Join(c.Cluster.Routes, ","))
	}
	if k != nil {
		o.Cluster.TLSConfig = k.route()
		o.Cluster.TLSTimeout = tlsTimeout
	}
}

// centralLeaf opens central's leaf listener, where sites dial in, when it
// has one. With its own users a site's link authenticates as the tenant's
// leaf user; in operator mode as a tenant's leaf user, landing in that
// tenant's account.
func (c Config) centralLeaf(o *server.Options, k *certs) error {
	if c.LeafListen == "" {
		return nil
	}
	o.LeafNode.Host, o.LeafNode.Port = hostPort(c.LeafListen)
	if k != nil {
		o.LeafNode.TLSConfig = k.server()
		o.LeafNode.TLSTimeout = tlsTimeout
	}
	if c.Trust == "" {
		o.LeafNode.Users = []*server.User{{Username: c.LeafUser, Password: hashPassword(c.LeafPassword), Account: account(o, c.Tenant)}}
	}
	return nil
}

// siteLeafRedial is how soon a site dials central again when its link
// drops, so catch-up starts within about a second of the WAN coming back:
// an attempt waits up to the dial timeout, then 250-500 ms until the next.
const siteLeafRedial = 250 * time.Millisecond

// siteLeaf is a site's link to central, with the tenant's leaf
// credential, when it has one.
func (c Config) siteLeaf(o *server.Options, k *certs) error {
	if len(c.Central) == 0 {
		return nil
	}
	o.LeafNode.ReconnectInterval = siteLeafRedial
	urls := make([]*url.URL, 0, len(c.Central))
	for _, s := range c.Central {
		u, err := url.Parse(s)
		if err != nil {
			return fmt.Errorf("central %q: %w", s, err)
		}
		u.User = url.UserPassword(c.LeafUser, c.LeafPassword)
		urls = append(urls, u)
	}
	o.LeafNode.Remotes = []*server.RemoteLeafOpts{{
		URLs:         urls,
		DialTimeout:  c.leafDialTimeout(),
		LocalAccount: c.Tenant,
		DenyImports:  leafDenyImports,
		DenyExports:  leafDenyExports,
		// Follow only the URLs given: central's advertised addresses
		// may not be reachable from the site (NAT, proxies).
		IgnoreDiscoveredServers: true,
	}}
	return c.leafTLS(o.LeafNode.Remotes, k)
}

// tenantsLeaf is a site's links to central in operator mode, one per
// tenant (tenantRemotes).
func (c Config) tenantsLeaf(o *server.Options, k *certs) error {
	if len(c.Central) == 0 {
		return nil
	}
	o.LeafNode.ReconnectInterval = siteLeafRedial
	remotes, err := c.tenantRemotes()
	if err != nil {
		return err
	}
	if err := c.leafTLS(remotes, k); err != nil {
		return err
	}
	o.LeafNode.Remotes = remotes
	return nil
}

// tlsTimeout bounds a TLS handshake on any link (nats-server's default is
// 2 s, short for a WAN link with loss).
const tlsTimeout = 5

// leafTLS makes a site's links to central TLS, verifying central against
// CentralCA (the CA its join token pins), else the CA of k. Without
// either (Validate asks for Insecure then) they stay plaintext.
func (c Config) leafTLS(remotes []*server.RemoteLeafOpts, k *certs) error {
	ca := c.CentralCA
	if ca == "" && k != nil {
		b, err := os.ReadFile(c.TLS.CA)
		if err != nil {
			return fmt.Errorf("tls ca: %w", err)
		}
		ca = string(b)
	}
	if ca == "" {
		return nil
	}
	for _, r := range remotes {
		tc, err := leafRemote(ca)
		if err != nil {
			return err
		}
		r.TLS, r.TLSConfig, r.TLSTimeout = true, tc, tlsTimeout
	}
	return nil
}

func (c Config) leafDialTimeout() time.Duration {
	if c.LeafDialTimeout > 0 {
		return c.LeafDialTimeout
	}
	return DefaultLeafDialTimeout
}

// leafSigner answers central's challenge with the user JWT and nkey of a
// .creds file's content, kept in memory.
func leafSigner(creds string) (server.SignatureHandler, error) {
	tok, err := jwt.ParseDecoratedJWT([]byte(creds))
	if err != nil {
		return nil, err
	}
	kp, err := jwt.ParseDecoratedUserNKey([]byte(creds))
	if err != nil {
		return nil, err
	}
	if _, err := jwt.DecodeUserClaims(tok); err != nil {
		return nil, fmt.Errorf("not a user JWT: %w", err)
	}
	return func(nonce []byte) (string, []byte, error) {
		sig, err := kp.Sign(nonce)
		return tok, sig, err
	}, nil
}
