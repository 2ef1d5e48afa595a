package peer

import (
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/tenancy"
)

// TenantEvents reads the tenants' EVENTS streams at a central peer in
// operator mode, for the console's events page of the ops credential
// (console.TenantEvents): the ops account imports the tenants' live
// events only and reads none of their streams, so that its JWT does not
// grow with the tenants. It reads over the tenant workers' connection in
// the tenant's account where this peer has one up (every central peer
// has one for each tenant with events, to stand for its lease), else over
// one of its own, signed with the peer's key (centralSigner), kept until
// it closes or the peer does.
type TenantEvents struct {
	p        *Peer
	ops      string // the ops account's public key
	mu       sync.Mutex
	accounts map[string]string     // tenant -> account, as Tenants last read them
	own      map[string]*nats.Conn // tenant -> the connection made here
}

// TenantEvents is the peer's reader of its tenants' EVENTS streams; it
// fails when the peer's trust file names no ops account.
func (p *Peer) TenantEvents() (*TenantEvents, error) {
	t, err := ReadTrust(p.cfg.Trust)
	if err != nil {
		return nil, err
	}
	ops := ""
	for pub, tok := range t.Preload {
		if ac, err := jwt.DecodeAccountClaims(tok); err == nil && pub != t.SystemAccount && ac.Name == tenancy.OpsAccount {
			ops = pub
		}
	}
	if ops == "" {
		return nil, fmt.Errorf("trust file %s: no ops account (%q) among the accounts it preloads; use the trust.json meshmon init wrote", p.cfg.Trust, tenancy.OpsAccount)
	}
	return &TenantEvents{p: p, ops: ops, accounts: map[string]string{}, own: map[string]*nats.Conn{}}, nil
}

// OpsAccount is the ops account's public key.
func (te *TenantEvents) OpsAccount() string { return te.ops }

// errNoEvents: central holds no events of the tenant (or it is none).
var errNoEvents = errors.New("central holds no events of it")

// Tenants are the tenants whose EVENTS stream holds events, each with the
// stream's last sequence as this peer holds it (a replica may lag its
// leader by what is being replicated).
func (te *TenantEvents) Tenants() (map[string]uint64, error) {
	srv := te.p.Server()
	if srv == nil {
		return nil, errors.New("central is not running")
	}
	info, err := jszAccounts(srv, server.JSzOptions{Streams: true})
	if err != nil {
		return nil, err
	}
	accs := eventsAccounts(info)
	out := make(map[string]uint64, len(accs))
	te.mu.Lock()
	defer te.mu.Unlock()
	clear(te.accounts)
	for _, a := range accs {
		out[a.tenant] = a.last
		te.accounts[a.tenant] = a.id
	}
	return out, nil
}

// JetStream reaches the tenant's streams at this peer.
func (te *TenantEvents) JetStream(tenant string) (jetstream.JetStream, error) {
	if v, ok := te.p.workerConns.Load(tenant); ok {
		if nc := v.(*nats.Conn); !nc.IsClosed() {
			return jetstream.New(nc)
		}
	}
	te.mu.Lock()
	defer te.mu.Unlock()
	if nc := te.own[tenant]; nc != nil && !nc.IsClosed() {
		return jetstream.New(nc)
	}
	srv := te.p.Server()
	acc := te.accounts[tenant]
	if srv == nil || acc == "" {
		return nil, fmt.Errorf("tenant %s: %w", tenant, errNoEvents)
	}
	signer, err := te.p.centralSigner()
	if err != nil {
		return nil, err
	}
	nc, err := signer.conn(srv, acc, "meshmon-peer-console")
	if err != nil {
		return nil, err
	}
	te.own[tenant] = nc
	return jetstream.New(nc)
}

// Close closes the connections made here.
func (te *TenantEvents) Close() {
	te.mu.Lock()
	defer te.mu.Unlock()
	for t, nc := range te.own {
		nc.Close()
		delete(te.own, t)
	}
}

// eventsAccount is an account whose EVENTS stream holds events.
type eventsAccount struct {
	id, tenant string
	last       uint64
}

// eventsAccounts are the accounts whose EVENTS stream holds events, with
// the stream's last sequence, by a look at every account's streams.
func eventsAccounts(info *server.JSInfo) []eventsAccount {
	var out []eventsAccount
	for _, ad := range info.AccountDetails {
		for _, sd := range ad.Streams {
			if sd.Name == bus.EventsStream && sd.State.LastSeq > 0 {
				name := ad.Name // the account's name tag: the tenant
				if name == "" {
					name = ad.Id
				}
				out = append(out, eventsAccount{id: ad.Id, tenant: name, last: sd.State.LastSeq})
				break
			}
		}
	}
	return out
}
