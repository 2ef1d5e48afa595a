package peer

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/bus/alarmbus"
	"github.com/meshmon/meshmon/bus/notifybus"
	"github.com/meshmon/meshmon/internal/backoff"
	"github.com/meshmon/meshmon/notify"
)

// TenantWorker is work a central peer does in one tenant's account, on the
// one central peer that holds the tenant's lease: it runs until ctx is
// done (the peer closes, or loses the lease: it returns then) or fails
// (an error: it is run again after a pause, while the lease is held). nc
// is an in-process connection in the tenant's account, with every
// permission there; tenant is the tenant's name ("" on a central with its
// own users, whose one account is the only tenant).
type TenantWorker func(ctx context.Context, nc *nats.Conn, tenant string) error

// tenantWorkers are the workers of each tenant, in order. Adding one is
// one line here.
func (p *Peer) tenantWorkers() []TenantWorker {
	return []TenantWorker{
		alarmbus.Worker(p.log, p.cfg.AlarmLateAfter),     // alarm state from EVENTS (issue 22)
		notifyWorker(p.cfg.Name, p.notifyReach(), p.log), // notifications of the alarms' changes
	}
}

// notifyWorker runs the tenant's notifications (bus/notifybus) over the
// ALARMS stream the alarm processor fills; a central with its own users
// serves DefaultTenant.
func notifyWorker(name string, reach notify.Reach, log *slog.Logger) TenantWorker {
	return func(ctx context.Context, nc *nats.Conn, tenant string) error {
		if tenant == "" {
			tenant = DefaultTenant
		}
		cfg := notifybus.DefaultConfig(tenant)
		cfg.Holder, cfg.Reach = name, reach
		cfg.Log = log.With("worker", "notify")
		return notifybus.RunConfig(ctx, nc, cfg)
	}
}

// notifyReach is where the peer's notifications may connect (Validate
// has checked the networks).
func (p *Peer) notifyReach() notify.Reach {
	deny, _ := notify.ParseDenyNets(p.cfg.NotifyDenyNets)
	return notify.Reach{AllowLoopback: p.cfg.NotifyAllowLoopback, Deny: deny}
}

// The tenant's lease: a key of a bucket in the tenant's account, held by
// one central peer (bus.Elector).
const (
	// TenantLeaseBucket and TenantLeaseKey are where the lease is.
	TenantLeaseBucket = "central_workers"
	TenantLeaseKey    = "lease"
	// tenantLease is the lease's TTL: a peer that dies is replaced this
	// long after its last renewal at most. It is renewed every quarter of
	// it, and given up (its workers stopped) when not renewed for three.
	tenantLease = 2 * time.Second
	// tenantsEvery is how often the peer looks for new or removed tenants.
	tenantsEvery = time.Second
)

// TenantLease is the value of a tenant's lease: who holds it.
type TenantLease struct {
	Peer  string    `json:"peer"`
	Since time.Time `json:"since"`
}

// superviseTenants runs the tenant workers of every tenant whose lease
// this peer holds, until ctx is done: on a central with its own users, in
// its one account; in operator mode, in each tenant's account (every
// account with an EVENTS stream), over connections signed with the peer's
// own key there (centralSigner), as the source watch does.
func (p *Peer) superviseTenants(ctx context.Context) {
	if p.cfg.NoTenantWorkers {
		return
	}
	running := map[string]context.CancelFunc{}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer func() {
		for _, stop := range running {
			stop()
		}
	}()
	t := time.NewTimer(tenantsEvery)
	defer t.Stop()
	for {
		wait := tenantsEvery
		if srv := p.Server(); srv != nil {
			want, took := p.tenantAccounts(srv)
			wait = paceAfter(tenantsEvery, took)
			for acc, name := range want {
				if _, ok := running[acc]; ok {
					continue
				}
				tctx, stop := context.WithCancel(ctx)
				running[acc] = stop
				wg.Go(func() { p.runTenant(tctx, srv, acc, name) })
			}
			for acc, stop := range running {
				if _, ok := want[acc]; !ok {
					stop()
					delete(running, acc)
				}
			}
			p.tenantLooks.Add(1)
		}
		t.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// tenantAccounts returns the accounts to run workers in, account -> tenant
// name: the peer's one account (tenant "") with its own users, or, in
// operator mode, every account whose EVENTS stream has stored an event.
//
// A tenant's workers start at its first event, not at its creation: a
// tenant without events has no alarm to keep or notify, and the workers
// of each tenant cost ten streams, four consumers, about 1.4 MiB and 63
// goroutines (docs/alarms.md), so that one peer could not carry a thousand
// idle tenants. The first event is processed as any other (the alarm
// processor starts from the stream's beginning), at most twice
// tenantsEvery later: the peer looks every tenantsEvery (or twenty times
// as long as a look takes, when longer: paceAfter), at a look of every
// account's streams up to tenantsEvery old (streamsLook, shared with the
// source watch).
//
// Or once woken (wokenAccounts): a tenant's admin, who may make no stream,
// has central make the tenant's alarm and notification stores before its
// first event so, to set notifications or maintenance up
// (bus.WakeCentral).
func (p *Peer) tenantAccounts(srv *server.Server) (map[string]string, time.Duration) {
	if !p.cfg.operatorMode() {
		return map[string]string{"": ""}, 0
	}
	info, took, err := p.streams.get(srv, tenantsEvery)
	if err != nil {
		return nil, 0
	}
	out := wokenAccounts(info)
	for _, a := range eventsAccounts(info) {
		out[a.id] = a.tenant
	}
	return out, took
}

// wokenAccounts are the accounts, account -> tenant, whose tenant bucket
// (bus.TenantBucket) holds a wake (bus.WakeCentral) beside the account's
// JWT: more than the one subject. A wake is kept; so is a tenant's being
// served, as any tenant's that has stored an event.
func wokenAccounts(info *server.JSInfo) map[string]string {
	out := map[string]string{}
	for _, ad := range info.AccountDetails {
		for _, sd := range ad.Streams {
			if sd.Name == "KV_"+bus.TenantBucket {
				if sd.State.NumSubjects > 1 {
					out[ad.Id] = cmp.Or(ad.Name, ad.Id)
				}
				break
			}
		}
	}
	return out
}

// dialTenant connects in process to the account (the peer's own when "").
func (p *Peer) dialTenant(srv *server.Server, account string) (*nats.Conn, error) {
	if account == "" {
		return p.InProcessConn(nats.Name("meshmon-peer-tenant-workers"), nats.NoReconnect())
	}
	signer, err := p.centralSigner()
	if err != nil {
		return nil, err
	}
	return signer.conn(srv, account, "meshmon-peer-tenant-workers")
}

// centralSigner returns the peer's one signing key for the accounts it
// acts in (made once: a second key would drop the first from the claims
// applied at this server, and close the connections it signed).
func (p *Peer) centralSigner() (*centralSigner, error) {
	p.signerOnce.Do(func() { p.signer, p.signerErr = newCentralSigner() })
	return p.signer, p.signerErr
}

// runTenant stands for the tenant's lease and runs its workers while it
// holds it, until ctx is done; a connection that closes is made again.
func (p *Peer) runTenant(ctx context.Context, srv *server.Server, account, tenant string) {
	retry := backoff.New(200*time.Millisecond, 5*time.Second)
	for ctx.Err() == nil {
		nc, err := p.dialTenant(srv, account)
		if err == nil {
			p.workerConns.Store(tenant, nc) // the console reads the tenant's events over it too
			err = p.leadTenant(ctx, nc, tenant)
			p.workerConns.CompareAndDelete(tenant, nc)
			nc.Close()
		}
		if err != nil && ctx.Err() == nil {
			p.log.Warn("tenant workers", "tenant", tenant, "err", err)
		}
		if err == nil {
			retry.Reset()
		}
		retry.Wait(ctx)
	}
}

// leadTenant campaigns for the tenant's lease over nc, runs the workers
// while it holds it, and stops them when it loses it; it returns when ctx
// is done (giving the lease up) or nc closes.
func (p *Peer) leadTenant(ctx context.Context, nc *nats.Conn, tenant string) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	kv, err := p.leaseBucket(ctx, js)
	if err != nil {
		return err
	}
	el := bus.NewElector(js, kv, TenantLeaseBucket, TenantLeaseKey, tenantLease)
	var stop func() // the running workers' stop, nil when not leading
	defer func() {
		if stop != nil {
			stop()
			rctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = el.Resign(rctx)
			cancel()
		}
	}()
	t := time.NewTicker(tenantLease / 4)
	defer t.Stop()
	for {
		switch {
		case nc.IsClosed():
			return errors.New("in-process connection closed")
		case stop == nil:
			b, _ := json.Marshal(TenantLease{Peer: p.cfg.Name, Since: time.Now().UTC()})
			actx, cancel := context.WithTimeout(ctx, tenantLease/2)
			if won, _ := el.Campaign(actx, b); won {
				p.log.Info("tenant workers: lease taken; starting", "tenant", tenant)
				stop = p.startWorkers(ctx, nc, tenant)
			}
			cancel()
		case time.Since(el.RenewedAt()) > tenantLease*3/4:
			p.log.Warn("tenant workers: lease not renewed in time; stopping", "tenant", tenant)
			stop()
			stop = nil
		default:
			actx, cancel := context.WithTimeout(ctx, tenantLease/4)
			if err := el.Renew(actx); errors.Is(err, bus.ErrLeaseLost) {
				p.log.Warn("tenant workers: lease lost; stopping", "tenant", tenant, "err", err)
				stop()
				stop = nil
			}
			cancel()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// leaseBucket makes (or opens) the bucket of the tenant's lease.
func (p *Peer) leaseBucket(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := bus.EnsureBucket(actx, js, jetstream.KeyValueConfig{
		Bucket:         TenantLeaseBucket,
		Description:    "meshmon central: which central peer runs the tenant's workers (alarms, notifications)",
		History:        1,
		Storage:        jetstream.FileStorage,
		Replicas:       p.cfg.Replicas(),
		LimitMarkerTTL: time.Minute,
	})
	if err != nil {
		return nil, err
	}
	return js.KeyValue(actx, TenantLeaseBucket)
}

// startWorkers runs each worker until the returned stop is called, again
// after a pause when it fails; stop waits for them.
func (p *Peer) startWorkers(ctx context.Context, nc *nats.Conn, tenant string) (stop func()) {
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, w := range p.tenantWorkers() {
		wg.Go(func() {
			retry := backoff.New(200*time.Millisecond, 10*time.Second)
			for wctx.Err() == nil {
				err := w(wctx, nc, tenant)
				if wctx.Err() != nil {
					return
				}
				p.log.Warn("tenant worker stopped; running it again", "tenant", tenant, "err", err)
				retry.Wait(wctx)
			}
		})
	}
	return func() { cancel(); wg.Wait() }
}
