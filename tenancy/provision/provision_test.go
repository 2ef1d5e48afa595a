package provision_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/peer"
	"github.com/meshmon/meshmon/tenancy"
	"github.com/meshmon/meshmon/tenancy/provision"
)

func TestStreamLimits(t *testing.T) {
	for _, tt := range []struct {
		disk     int64
		replicas int
		want     int64
	}{
		{1 << 30, 1, (1 << 30) * 45 / 100},
		{1 << 30, 3, (1 << 30) * 45 / 100 / 3},
		{1 << 20, 1, 1 << 20}, // never below 1 MiB
	} {
		lim := tenancy.DefaultLimits()
		lim.DiskBytes = tt.disk
		sl := provision.StreamLimits(lim, tt.replicas)
		if sl.EventsMaxBytes != tt.want || sl.MetricsMaxBytes != tt.want || sl.Replicas != tt.replicas {
			t.Errorf("disk %d, %d replicas: events %d metrics %d replicas %d; want %d, %d and %d",
				tt.disk, tt.replicas, sl.EventsMaxBytes, sl.MetricsMaxBytes, sl.Replicas, tt.want, tt.want, tt.replicas)
		}
		if err := sl.Validate(); err != nil {
			t.Errorf("disk %d, %d replicas: %v", tt.disk, tt.replicas, err)
		}
	}
}

// central starts a central peer in operator mode with st's trust and
// returns its client URL and a system account connection to it.
func central(t *testing.T, st *tenancy.Store) (string, *nats.Conn) {
	t.Helper()
	trust, err := st.Trust()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "trust.json")
	b, _ := json.Marshal(trust)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := peer.DefaultConfig()
	cfg.Role, cfg.Name, cfg.Listen, cfg.DataDir, cfg.Trust = peer.RoleCentral, "c1", "127.0.0.1:0", t.TempDir(), path
	cfg.Insecure = true
	p, err := peer.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	creds, err := st.SystemCreds(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	sys, err := dialer(t, p.ClientURL())(creds)
	if err != nil {
		t.Fatal(err)
	}
	return p.ClientURL(), sys
}

func dialer(t *testing.T, url string) provision.Dialer {
	return func(creds []byte) (*nats.Conn, error) {
		auth, err := tenancy.CredsOption(creds)
		if err != nil {
			return nil, err
		}
		nc, err := nats.Connect(url, auth, nats.MaxReconnects(0))
		if err == nil {
			t.Cleanup(nc.Close)
		}
		return nc, err
	}
}

func newStore(t *testing.T) *tenancy.Store {
	t.Helper()
	st, err := tenancy.Init(filepath.Join(t.TempDir(), "keys"), "test")
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestCreate: a tenant created at central has its streams, sized by
// StreamLimits, and its usage can be read as its admin.
func TestCreate(t *testing.T) {
	st := newStore(t)
	url, sys := central(t, st)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lim := tenancy.DefaultLimits()
	lim.DiskBytes = 64 << 20
	tn, replicas, err := provision.Create(ctx, st, sys, dialer(t, url), "acme", lim, 0)
	if err != nil {
		t.Fatal(err)
	}
	if replicas != 1 || tn.Name != "acme" || tn.Account == "" {
		t.Fatalf("created %+v at %d replicas; want acme at 1 (one central peer)", tn, replicas)
	}
	creds, err := st.AdminCreds("acme", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := dialer(t, url)(creds)
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.NewWithDomain(nc, bus.HubDomain)
	if err != nil {
		t.Fatal(err)
	}
	want := provision.StreamLimits(lim, 1).EventsMaxBytes
	for _, name := range []string{bus.EventsStream, bus.MetricsStream} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		if got := s.CachedInfo().Config.MaxBytes; got != want {
			t.Errorf("stream %s max bytes %d, want %d", name, got, want)
		}
	}
	u, err := provision.ReadUsage(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	if u.Streams < 2 || u.Events != 0 || u.Samples != 0 {
		t.Fatalf("usage of a new tenant: %+v; want its streams, no events, no samples", u)
	}
	if tu, err := provision.TenantUsage(ctx, st, dialer(t, url), "acme"); err != nil || tu.Streams != u.Streams {
		t.Fatalf("TenantUsage: %+v, %v; want %+v", tu, err, u)
	}
	if _, _, err := provision.Create(ctx, st, sys, dialer(t, url), "acme", lim, 0); err == nil {
		t.Fatal("a second tenant acme was created")
	}
}

// TestCreateUndo: a tenant central does not take is removed from the key
// store again, so the same name can be created once central answers.
func TestCreateUndo(t *testing.T) {
	st := newStore(t)
	url, sys := central(t, st)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	refused := errors.New("refused")
	fail := func([]byte) (*nats.Conn, error) { return nil, refused }
	if _, _, err := provision.Create(ctx, st, sys, fail, "acme", tenancy.DefaultLimits(), 1); !errors.Is(err, refused) {
		t.Fatalf("a dial that fails: got %v, want %v", err, refused)
	}
	if _, err := st.Tenant("acme"); err == nil {
		t.Fatal("the tenant central did not take stayed in the key store")
	}
	closed, err := dialer(t, url)(mustSystemCreds(t, st))
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	if _, _, err := provision.Create(ctx, st, closed, dialer(t, url), "acme", tenancy.DefaultLimits(), 1); err == nil {
		t.Fatal("a push over a closed connection passed")
	}
	if ts, err := st.Tenants(); err != nil || len(ts) != 0 {
		t.Fatalf("tenants after a failed push: %v, %v; want none", ts, err)
	}
	if _, _, err := provision.Create(ctx, st, sys, dialer(t, url), "acme", tenancy.DefaultLimits(), 1); err != nil {
		t.Fatalf("create once central answers: %v", err)
	}
}

func mustSystemCreds(t *testing.T, st *tenancy.Store) []byte {
	t.Helper()
	creds, err := st.SystemCreds(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return creds
}

// TestRemove: a tenant without data is removed from central and the key
// store, and its name can be created again; an unknown tenant is refused.
func TestRemove(t *testing.T) {
	st := newStore(t)
	url, sys := central(t, st)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, _, err := provision.Create(ctx, st, sys, dialer(t, url), "acme", tenancy.DefaultLimits(), 1); err != nil {
		t.Fatal(err)
	}
	n, err := provision.Remove(ctx, st, sys, dialer(t, url), "acme", false)
	if err != nil {
		t.Fatal(err)
	}
	if n < 2 {
		t.Errorf("%d streams deleted; want EVENTS and METRICS at least", n)
	}
	if _, err := st.Tenant("acme"); err == nil {
		t.Fatal("the removed tenant is still in the key store")
	}
	if _, err := provision.Remove(ctx, st, sys, dialer(t, url), "acme", false); err == nil {
		t.Fatal("removing a tenant that is gone passed")
	}
	if _, _, err := provision.Create(ctx, st, sys, dialer(t, url), "acme", tenancy.DefaultLimits(), 1); err != nil {
		t.Fatalf("create again after remove: %v", err)
	}
}
