package provision_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/meshmon/meshmon/tenancy"
	"github.com/meshmon/meshmon/tenancy/provision"
)

// TestOpsViewOfATenantSignedBefore: a tenant signed by a release before
// the ops view's imports were turned around (it exported its events and
// tasks, and the ops account imported them) keeps its ops view; the
// first change of it moves the imports into the tenant's own JWT and
// pushes the ops account without its old ones, and the ops view gets
// each event once, before and after.
func TestOpsViewOfATenantSignedBefore(t *testing.T) {
	st := newStore(t)
	url, sys := central(t, st)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d := provision.Dialers{System: dialer(t, url), Admin: dialer(t, url)}
	tn, _, err := provision.Create(ctx, st, sys, d.Admin, "acme", tenancy.DefaultLimits(), 1)
	if err != nil {
		t.Fatal(err)
	}
	signBefore(t, st, "acme")
	before, err := st.Tenant("acme")
	if err != nil {
		t.Fatal(err)
	}
	ops, changed, err := st.OpsAccount()
	if err != nil || changed {
		t.Fatalf("the ops account of a tenant signed before: changed %v, %v; want it as that release signed it", changed, err)
	}
	for _, tok := range []string{before.JWT, ops} {
		if err := tenancy.Push(ctx, sys, tok); err != nil {
			t.Fatal(err)
		}
	}
	if old, err := st.OpsImportsBefore(tn.Account); err != nil || !old {
		t.Fatalf("the ops account imports the events of a tenant signed before: %v, %v; want true", old, err)
	}

	opsCreds, err := st.OpsCreds("olga", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	opsNC, err := dialer(t, url)(opsCreds)
	if err != nil {
		t.Fatal(err)
	}
	view, err := opsNC.SubscribeSync(tenancy.OpsSubject("*"))
	if err != nil {
		t.Fatal(err)
	}
	if err := opsNC.Flush(); err != nil {
		t.Fatal(err)
	}
	// What central's EVENTS republishes, as it does.
	pub := rawUser(t, st, url, "acme")
	// each publishes events n (a batch) and reads them from the view, in
	// order, each once: a second copy comes before the next event.
	each := func(what string, events ...string) {
		t.Helper()
		for _, e := range events {
			if err := pub.Publish("stored.ev.s1.d1."+e, []byte(e)); err != nil {
				t.Fatal(err)
			}
		}
		if err := pub.Flush(); err != nil {
			t.Fatal(err)
		}
		for _, e := range events {
			m, err := view.NextMsg(5 * time.Second)
			if err != nil {
				t.Fatalf("%s: the ops view did not get event %s: %v", what, e, err)
			}
			if want := "tenants.acme.ev.s1.d1." + e; m.Subject != want {
				t.Fatalf("%s: the ops view got %s, want %s (each event once, in order)", what, m.Subject, want)
			}
		}
	}
	each("signed before", "e1", "e2", "e3")

	// The tenant's first change after the upgrade.
	lim := tenancy.DefaultLimits()
	lim.Consumers = 9
	after, err := provision.SetLimits(ctx, st, d, "acme", lim)
	if err != nil {
		t.Fatal(err)
	}
	if old, err := st.OpsImportsBefore(tn.Account); err != nil || old {
		t.Fatalf("after the tenant's change the ops account still imports its events: %v, %v", old, err)
	}
	ac, err := jwt.DecodeAccountClaims(after.JWT)
	if err != nil {
		t.Fatal(err)
	}
	var imports []string
	for _, im := range ac.Imports {
		imports = append(imports, string(im.Subject)+" as "+string(im.LocalSubject))
	}
	slices.Sort(imports)
	want := []string{"tenants.acme.ctl.*.ops.*.* as ctl.$1.ops.$2.$3", "tenants.acme.ctl.*.reply.ops.> as ctl.$1.reply.ops.>",
		"tenants.acme.ev.> as stored.ev.>"}
	if !slices.Equal(imports, want) {
		t.Fatalf("the tenant's imports after its change: %q, want %q", imports, want)
	}
	each("signed again", "e4", "e5", "e6")
}

// signBefore signs tenant's account JWT in st as a release before the ops
// view's imports were turned around did: no imports, and exports of its
// stored events, its JetStream API and its ops tasks; and the ops
// account's, with its imports of them.
func signBefore(t *testing.T, st *tenancy.Store, tenant string) {
	t.Helper()
	dir := filepath.Join(st.Dir(), "tenants", tenant)
	b, err := os.ReadFile(filepath.Join(dir, "account.jwt"))
	if err != nil {
		t.Fatal(err)
	}
	ac, err := jwt.DecodeAccountClaims(string(b))
	if err != nil {
		t.Fatal(err)
	}
	ac.Imports = nil
	ac.Exports = jwt.Exports{
		{Name: "meshmon events", Subject: "stored.ev.>", Type: jwt.Stream},
		{Name: "meshmon ops replay", Subject: "$JS.API.>", Type: jwt.Service, ResponseType: jwt.ResponseTypeStream},
		{Name: "meshmon ops tasks", Subject: "ctl.*.ops.*.*", Type: jwt.Service},
		{Name: "meshmon ops task replies", Subject: "ctl.*.reply.ops.>", Type: jwt.Stream},
	}
	op := readSeed(t, filepath.Join(st.Dir(), "operator.nk"))
	tok, err := ac.Encode(op)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "account.jwt"), []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	opsPath := filepath.Join(st.Dir(), "ops", "account.jwt")
	b, err = os.ReadFile(opsPath)
	if err != nil {
		t.Fatal(err)
	}
	oc, err := jwt.DecodeAccountClaims(string(b))
	if err != nil {
		t.Fatal(err)
	}
	p := "tenants." + tenant + "."
	oc.Imports.Add(
		&jwt.Import{Name: tenant, Subject: "stored.ev.>", Account: ac.Subject, LocalSubject: jwt.RenamingSubject(p + "ev.>"), Type: jwt.Stream},
		&jwt.Import{Subject: "ctl.*.ops.*.*", Account: ac.Subject, Type: jwt.Service, LocalSubject: jwt.RenamingSubject(p + "ctl.$1.ops.$2.$3")},
		&jwt.Import{Subject: "ctl.*.reply.ops.>", Account: ac.Subject, Type: jwt.Stream, LocalSubject: jwt.RenamingSubject(p + "ctl.$1.reply.ops.>")})
	if tok, err = oc.Encode(op); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(opsPath, []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
}

// rawUser connects to url as a user of tenant without permissions, signed
// with the tenant's signing key: it publishes what central's streams do.
func rawUser(t *testing.T, st *tenancy.Store, url, tenant string) *nats.Conn {
	t.Helper()
	tn, err := st.Tenant(tenant)
	if err != nil {
		t.Fatal(err)
	}
	sk := readSeed(t, filepath.Join(st.Dir(), "tenants", tenant, "signing.nk"))
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	uc := jwt.NewUserClaims(pub)
	uc.IssuerAccount = tn.Account
	tok, err := uc.Encode(sk)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url, nats.UserJWT(func() (string, error) { return tok, nil }, kp.Sign), nats.MaxReconnects(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func readSeed(t *testing.T, path string) nkeys.KeyPair {
	t.Helper()
	seed, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}
