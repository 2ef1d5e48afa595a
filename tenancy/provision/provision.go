// Package provision creates tenants at central: it signs a tenant's account
// in the key store (package tenancy), pushes it to central's resolver and
// makes the tenant's central streams, sized within its disk limit; and it
// reads what a tenant uses. 'meshmon tenant' and 'meshmon bench tenants'
// call it. It sits above tenancy and bus, which cannot import each other
// both ways (bus imports tenancy).
package provision

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/backoff"
	"github.com/meshmon/meshmon/tenancy"
)

// Dialer connects to central with in-memory credentials.
type Dialer func(creds []byte) (*nats.Conn, error)

// StreamLimits sizes a tenant's central streams within its disk: events
// and metrics get 45% each (divided among the replicas, at least 1 MiB),
// the buckets the rest.
func StreamLimits(lim tenancy.Limits, replicas int) bus.StreamLimits {
	sl := bus.DefaultStreamLimits()
	sl.EventsMaxBytes = max(lim.DiskBytes*45/100/int64(replicas), 1<<20)
	sl.MetricsMaxBytes = sl.EventsMaxBytes
	sl.Replicas = replicas
	return sl
}

// MakeStreams makes a new tenant's central streams, sized by StreamLimits,
// once JetStream answers in its account (a peer enables it a moment after
// it stores the account's JWT), and records the account's JWT in the
// tenant's bucket, where its sites follow it. js is the tenant's, in the
// hub domain.
func MakeStreams(ctx context.Context, js jetstream.JetStream, t tenancy.Tenant, replicas int) error {
	if err := bus.WaitJetStream(ctx, js); err != nil {
		return fmt.Errorf("the tenant's account: %w", err)
	}
	// The peer that answered may hold the account before the one that
	// leads the cluster's metadata does: until then a stream's creation
	// is refused as "jetstream not enabled" or goes unanswered (seen in
	// 'bench tenants' under load, at the 78th tenant's bucket and the
	// 133rd's METRICS stream). Both steps are idempotent.
	b := backoff.New(100*time.Millisecond, 2*time.Second)
	for {
		err := bus.EnsureCentral(ctx, js, StreamLimits(t.Limits, replicas))
		if err == nil {
			err = bus.PutAccountJWT(ctx, js, t.JWT, replicas)
		}
		if err == nil || !accountSettling(err) || !b.Wait(ctx) {
			return err
		}
	}
}

// accountSettling reports whether err is what a cluster answers while a
// new account's JWT reaches its members: worth asking again.
func accountSettling(err error) bool {
	return errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrTimeout)
}

// Create creates tenant name with limits lim: it signs the tenant's
// account in st, pushes it and the ops account (which imports every
// tenant's events) over sys, a system account connection to central, and
// makes the tenant's central streams as its admin, over a connection from
// dial. replicas 0 picks 3 on a cluster of three or more, else 1; Create
// returns the replicas it used. A tenant central did not take is removed
// from st again; a tenant whose streams could not be made stays (the
// error says how to remove it).
func Create(ctx context.Context, st *tenancy.Store, sys *nats.Conn, dial Dialer, name string, lim tenancy.Limits, replicas int) (tenancy.Tenant, int, error) {
	t, err := st.CreateTenant(name, lim)
	if err != nil {
		return t, 0, err
	}
	nc, js, err := pushAccounts(ctx, st, sys, dial, t)
	if err != nil {
		if rerr := st.RemoveTenant(name); rerr != nil {
			return t, 0, fmt.Errorf("%w (and removing it from the key store again: %v)", err, rerr)
		}
		return t, 0, err
	}
	defer nc.Close()
	if replicas == 0 {
		replicas = 1
		if 1+len(nc.DiscoveredServers()) >= 3 {
			replicas = 3
		}
	}
	if err := MakeStreams(ctx, js, t, replicas); err != nil {
		return t, 0, fmt.Errorf("tenant %s: its streams: %w (the account exists; 'meshmon tenant rm %s' removes it)", name, err, name)
	}
	return t, replicas, nil
}

// pushAccounts pushes t's account, and the ops account when it changed,
// over sys, then
// connects as a short-lived admin of t, to JetStream in the hub domain.
func pushAccounts(ctx context.Context, st *tenancy.Store, sys *nats.Conn, dial Dialer, t tenancy.Tenant) (*nats.Conn, jetstream.JetStream, error) {
	if err := tenancy.Push(ctx, sys, t.JWT); err != nil {
		return nil, nil, err
	}
	if err := pushOps(ctx, st, sys); err != nil {
		return nil, nil, err
	}
	return AdminJS(st, dial, t.Name)
}

// Usage is what central says a tenant uses.
type Usage struct {
	Disk      uint64 `json:"disk_bytes"`
	Memory    uint64 `json:"memory_bytes"`
	Streams   int    `json:"streams"`
	Consumers int    `json:"consumers"`
	Events    uint64 `json:"events"`
	Samples   uint64 `json:"samples"`
}

// ReadUsage reads what the tenant of js (in the hub domain) uses at
// central: its account's totals and the messages in its EVENTS and METRICS
// streams (0 for a stream it does not have).
func ReadUsage(ctx context.Context, js jetstream.JetStream) (Usage, error) {
	info, err := js.AccountInfo(ctx)
	if err != nil {
		return Usage{}, err
	}
	u := Usage{Disk: info.Store, Memory: info.Memory, Streams: info.Streams, Consumers: info.Consumers}
	for name, n := range map[string]*uint64{bus.EventsStream: &u.Events, bus.MetricsStream: &u.Samples} {
		s, err := js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return u, err
		}
		*n = s.CachedInfo().State.Msgs
	}
	return u, nil
}

// Remove removes tenant name through central, so that its data goes too:
// it deletes the tenant's streams as its admin (over a connection from
// dial), takes its account off central's resolver over sys (a system
// account connection), removes its keys from st and pushes the ops account
// without it. A tenant that holds events or samples is refused, with an
// error wrapping ErrHoldsData, unless force. It returns how many streams
// it deleted.
func Remove(ctx context.Context, st *tenancy.Store, sys *nats.Conn, dial Dialer, name string, force bool) (int, error) {
	if _, err := st.Tenant(name); err != nil {
		return 0, err
	}
	n, err := deleteStreams(ctx, st, dial, name, force)
	if err != nil {
		return 0, err
	}
	if err := st.Unpush(ctx, sys, name); err != nil {
		return n, err
	}
	if err := st.RemoveTenant(name); err != nil {
		return n, err
	}
	if err := pushOps(ctx, st, sys); err != nil {
		return n, fmt.Errorf("tenant %s removed, but the ops account still imports its events (it was signed before the tenants imported the ops view themselves): %w", name, err)
	}
	return n, nil
}

// pushOps pushes the ops account over sys, and keeps it in st, when it
// changed (tenancy.OpsAccount): a tenant's create changes it only on the
// first create after an upgrade from a release whose ops account
// imported each tenant's replay API.
func pushOps(ctx context.Context, st *tenancy.Store, sys *nats.Conn) error {
	ops, changed, err := st.OpsAccount()
	if err != nil || !changed {
		return err
	}
	if err := tenancy.Push(ctx, sys, ops); err != nil {
		return fmt.Errorf("the ops account: %w", err)
	}
	return st.SaveOpsAccount(ops)
}

// deleteStreams deletes every stream of tenant name as its admin, unless
// it holds events or samples and not force.
func deleteStreams(ctx context.Context, st *tenancy.Store, dial Dialer, name string, force bool) (int, error) {
	creds, err := st.AdminCreds(name, 5*time.Minute)
	if err != nil {
		return 0, err
	}
	nc, err := dial(creds)
	if err != nil {
		return 0, fmt.Errorf("connect to central as tenant %s: %w; a tenant is removed through central, so that its data goes too", name, err)
	}
	defer nc.Close()
	js, err := jetstream.NewWithDomain(nc, bus.HubDomain)
	if err != nil {
		return 0, err
	}
	u, err := ReadUsage(ctx, js)
	if err != nil {
		return 0, err
	}
	if (u.Events > 0 || u.Samples > 0) && !force {
		return 0, fmt.Errorf("tenant %s holds %d events and %d samples (%w); 'meshmon tenant rm %s --force' deletes them with the tenant", name, u.Events, u.Samples, ErrHoldsData, name)
	}
	names := js.StreamNames(ctx)
	var streams []string
	for s := range names.Name() {
		streams = append(streams, s)
	}
	if err := names.Err(); err != nil {
		return 0, err
	}
	for _, s := range streams {
		if err := js.DeleteStream(ctx, s); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return 0, fmt.Errorf("tenant %s: delete stream %s: %w", name, s, err)
		}
	}
	return len(streams), nil
}
