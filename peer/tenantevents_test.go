package peer

import (
	"cmp"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/tenancy"
)

// TestTenantEventsReadsEachTenant: the console's reader of the tenants'
// streams lists the tenants whose EVENTS holds events (with their last
// sequences), none without, and reads each one's EVENTS in its own
// account, over a connection of its own before the tenant's workers start
// and over theirs after; a tenant without events it does not reach.
func TestTenantEventsReadsEachTenant(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, p := startOperatorCentral(t)
	connect := func(creds []byte) *nats.Conn { return credsConn(t, p.ClientURL(), creds) }
	sysCreds, err := st.SystemCreds(0)
	if err != nil {
		t.Fatal(err)
	}
	sys := connect(sysCreds)
	lim := bus.DefaultStreamLimits()
	lim.EventsMaxBytes, lim.MetricsMaxBytes = 16<<20, 16<<20
	js := map[string]jetstream.JetStream{}
	accounts := map[string]string{}
	for _, name := range []string{"acme", "beta"} {
		tn, err := st.CreateTenant(name, tenancy.DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		accounts[name] = tn.Account
		if err := tenancy.Push(ctx, sys, tn.JWT); err != nil {
			t.Fatal(err)
		}
		adminCreds, err := st.AdminCreds(name, 10*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if js[name], err = jetstream.New(connect(adminCreds)); err != nil {
			t.Fatal(err)
		}
		eventually.NoError(t, time.Minute, name+"'s streams", func() error { return bus.EnsureStreams(ctx, js[name], lim) })
	}
	publishStateEvents(t, siteJS(t, p, accounts["acme"]), "par", meshmon.KindNodeDown, "", "r1", "r2")

	te, err := p.TenantEvents()
	if err != nil {
		t.Fatal(err)
	}
	defer te.Close()
	opsCreds, err := st.OpsCreds("olga", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := tenancy.CredsIdentity(opsCreds); err != nil || te.OpsAccount() == "" || !credsOf(t, opsCreds, te.OpsAccount()) {
		t.Fatalf("the ops account %q: not the one the store's ops user is of (%+v, %v)", te.OpsAccount(), id, err)
	}
	tenants, err := te.Tenants()
	if err != nil || len(tenants) != 1 || tenants["acme"] != 2 {
		t.Fatalf("tenants %v, %v; want acme at 2 only (beta holds no events)", tenants, err)
	}
	read := func(how string) {
		t.Helper()
		ajs, err := te.JetStream("acme")
		if err != nil {
			t.Fatalf("%s: %v", how, err)
		}
		s, err := ajs.Stream(ctx, bus.EventsStream)
		if err != nil {
			t.Fatalf("%s: acme's EVENTS: %v", how, err)
		}
		m, err := s.GetMsg(ctx, 2)
		if err != nil || m.Subject != "ev.par.r2.node_down" {
			t.Fatalf("%s: acme's event 2: %v, %v", how, m, err)
		}
	}
	read("over its own connection")
	if _, err := te.JetStream("beta"); !errors.Is(err, errNoEvents) {
		t.Fatalf("beta, without events: %v, want %v", err, errNoEvents)
	}
	if _, err := te.JetStream("nobody"); !errors.Is(err, errNoEvents) {
		t.Fatalf("a tenant that is none: %v, want %v", err, errNoEvents)
	}
	eventually.True(t, 30*time.Second, "acme's workers' connection", func() bool {
		_, ok := p.workerConns.Load("acme")
		return ok
	})
	te.Close()
	read("over the workers' connection")
}

// credsOf reports whether the user of creds is of account.
func credsOf(t *testing.T, creds []byte, account string) bool {
	t.Helper()
	tok, err := jwt.ParseDecoratedJWT(creds)
	if err != nil {
		t.Fatal(err)
	}
	uc, err := jwt.DecodeUserClaims(tok)
	if err != nil {
		t.Fatal(err)
	}
	return cmp.Or(uc.IssuerAccount, uc.Issuer) == account
}
