package provision_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"

	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/tenancy"
	"github.com/meshmon/meshmon/tenancy/provision"
)

// accountJWT reads the account JWT recorded in the tenant's bucket, as its
// admin.
func accountJWT(t *testing.T, ctx context.Context, st *tenancy.Store, d provision.Dialers, tenant string) string {
	t.Helper()
	nc, js, err := provision.AdminJS(st, d.Admin, tenant)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// Right after a push the account's JetStream may answer nothing for a
	// moment (PushTenant asks again for its own write; this read failed
	// once in CI with "no responders" right after SetLimits).
	var tok string
	eventually.NoError(t, 10*time.Second, "the tenant bucket's account", func() error {
		kv, err := js.KeyValue(ctx, bus.TenantBucket)
		if err != nil {
			return err
		}
		e, err := kv.Get(ctx, bus.TenantAccountKey)
		if err != nil {
			return err
		}
		tok = string(e.Value())
		return nil
	})
	return tok
}

// TestChanges: a site added (once, or again with existOK once its users are
// revoked), a site's join, a poller's credentials (with the site's
// poller key pushed first: central has it, and refuses the poller), a
// revocation and new limits reach central, as the tenant's bucket,
// central's account JWT and its answers to the credentials show.
func TestChanges(t *testing.T) {
	st := newStore(t)
	url, sys := central(t, st)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d := provision.Dialers{System: dialer(t, url), Admin: dialer(t, url)}
	if _, _, err := provision.Create(ctx, st, sys, d.Admin, "acme", tenancy.DefaultLimits(), 1); err != nil {
		t.Fatal(err)
	}

	central := []string{"nats-leaf://central.example:7422"}
	info, err := provision.AddSite(ctx, st, d, "acme", "nice", central, nil, false)
	if err != nil || info.Tenant != "acme" || info.Creds == "" || !slices.Equal(info.Central, central) {
		t.Fatalf("add a site: %+v, %v; want the join info of acme's site", info, err)
	}
	if _, err := provision.AddSite(ctx, st, d, "acme", "nice", central, nil, false); !errors.Is(err, bus.ErrSiteExists) {
		t.Fatalf("add the site again: %v, want %v", err, bus.ErrSiteExists)
	}
	for _, u := range []string{"leaf-nice", "site-nice"} {
		if err := provision.Revoke(ctx, st, d, "acme", u); err != nil {
			t.Fatal(err)
		}
	}
	if info, err := provision.AddSite(ctx, st, d, "acme", "nice", central, nil, true); err != nil || info.Creds == "" {
		t.Fatalf("add the site again, existOK, its users revoked: %+v, %v; want a new token", info, err)
	}
	if _, err := provision.AddSite(ctx, st, d, "acme", "cannes", []string{"central.example:7422"}, nil, false); err == nil {
		t.Fatal("a central leaf URL without a scheme is taken")
	}

	b, err := provision.SiteJoin(ctx, st, d, "acme", "paris")
	if err != nil {
		t.Fatal(err)
	}
	if len(b.LeafCreds) == 0 || b.AccountJWT == "" {
		t.Fatalf("site bundle without leaf credentials or account: %+v", b)
	}
	if got := accountJWT(t, ctx, st, d, "acme"); got != b.AccountJWT {
		t.Fatal("the tenant's bucket does not hold the account with the site's poller key")
	}

	if _, _, err := provision.IssueCreds(ctx, st, d, "acme", "", tenancy.RolePoller, "lyon"); !errors.Is(err, tenancy.ErrNoSite) {
		t.Fatalf("a poller of a site the tenant never added: %v, want %v", err, tenancy.ErrNoSite)
	}
	// Nor a leaf user, which would make lyon a site of the tenant.
	if _, _, err := provision.IssueCreds(ctx, st, d, "acme", "", tenancy.RoleLeaf, "lyon"); !errors.Is(err, tenancy.ErrNoSite) {
		t.Fatalf("a leaf user of a site the tenant never added: %v, want %v", err, tenancy.ErrNoSite)
	}
	if tn, err := st.Tenant("acme"); err != nil || slices.Contains(tn.Sites(), "lyon") {
		t.Fatalf("the tenant's sites after a refused leaf user: %v, %v", tn.Sites(), err)
	}
	u, creds, err := provision.IssueCreds(ctx, st, d, "acme", "", tenancy.RolePoller, "paris")
	if err != nil {
		t.Fatal(err)
	}
	if u.Name != "poller-paris" || u.Role != tenancy.RolePoller || u.Site != "paris" {
		t.Fatalf("issued %+v; want poller-paris, a poller of paris", u)
	}
	// IssueCreds pushed the site's poller key first: central holds it in
	// the account's JWT, and refuses the poller all the same (a poller
	// works at its own site only; central drops every site's key from
	// the claims it applies).
	tn, err := st.Tenant("acme")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := sys.Request("$SYS.REQ.ACCOUNT."+tn.Account+".CLAIMS.LOOKUP", nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ac, err := jwt.DecodeAccountClaims(string(msg.Data))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(ac.SigningKeys.Keys(), func(k string) bool {
		us, ok := ac.SigningKeys[k].(*jwt.UserScope)
		return ok && us.Role == tenancy.PollerScopeRole("paris")
	}) {
		t.Fatal("central's account JWT has no poller key of paris")
	}
	refusedAt := func(creds []byte) func() bool {
		return func() bool {
			nc, err := dialer(t, url)(creds)
			if err == nil {
				nc.Close()
			}
			return err != nil
		}
	}
	eventually.True(t, 10*time.Second, "central refuses the poller", refusedAt(creds))

	// A revocation reaches central: a NOC's credentials, refused there
	// once revoked.
	noc, nocCreds, err := provision.IssueCreds(ctx, st, d, "acme", "", tenancy.RoleNOC, "")
	if err != nil {
		t.Fatal(err)
	}
	nc, err := dialer(t, url)(nocCreds)
	if err != nil {
		t.Fatalf("central refuses a new NOC's credentials: %v", err)
	}
	nc.Close()
	if err := provision.Revoke(ctx, st, d, "acme", noc.Name); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 10*time.Second, "central refuses the revoked credentials", refusedAt(nocCreds))
	if err := provision.Revoke(ctx, st, d, "acme", "nobody"); !errors.Is(err, tenancy.ErrNoUser) {
		t.Fatalf("revoke an unknown user: %v, want %v", err, tenancy.ErrNoUser)
	}

	lim := tenancy.DefaultLimits()
	lim.Consumers = 7
	tn, err = provision.SetLimits(ctx, st, d, "acme", lim)
	if err != nil {
		t.Fatal(err)
	}
	if tn.Limits.Consumers != 7 || accountJWT(t, ctx, st, d, "acme") != tn.JWT {
		t.Fatalf("new limits: %+v, the bucket's account is not the new one", tn.Limits)
	}
	refused := errors.New("refused")
	down := provision.Dialers{System: func([]byte) (*nats.Conn, error) { return nil, refused }, Admin: d.Admin}
	lim.Consumers = 8
	if _, err := provision.SetLimits(ctx, st, down, "acme", lim); !errors.Is(err, refused) {
		t.Fatalf("limits with central unreachable: %v, want %v", err, refused)
	}
	if tn, err := st.Tenant("acme"); err != nil || tn.Limits.Consumers != 8 {
		t.Fatalf("the key store does not keep limits it could not push: %+v, %v", tn.Limits, err)
	}
}
