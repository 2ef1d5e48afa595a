package tenancy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/internal/freeport"
	"github.com/meshmon/meshmon/peer"
	"github.com/meshmon/meshmon/tenancy"
)

func TestInitAndOpen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	if _, err := tenancy.Init(dir, "acme-msp"); err != nil {
		t.Fatal(err)
	}
	if _, err := tenancy.Init(dir, "acme-msp"); !errors.Is(err, tenancy.ErrExists) {
		t.Fatalf("a second init: %v, want ErrExists", err)
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("key store dir: %v, mode %v", err, fi.Mode().Perm())
	}
	for _, key := range []string{"operator.nk", "system/account.nk", "system/signing.nk", "ops/account.nk", "ops/signing.nk"} {
		fi, err := os.Stat(filepath.Join(dir, key))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, mode %v", key, err, fi.Mode().Perm())
		}
	}
	if _, err := tenancy.Open(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := tenancy.Open(t.TempDir()); !errors.Is(err, tenancy.ErrNoStore) {
		t.Fatalf("open an empty dir: %v, want ErrNoStore", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := tenancy.Open(dir); !errors.Is(err, tenancy.ErrPermissions) {
		t.Fatalf("open a world-readable store: %v, want ErrPermissions", err)
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

func TestTenants(t *testing.T) {
	st := newStore(t)
	for _, bad := range []string{"a.b", "*", ">", "a b", "", "Acme", "ops"} {
		if _, err := st.CreateTenant(bad, tenancy.DefaultLimits()); err == nil {
			t.Errorf("tenant %q was accepted", bad)
		}
	}
	if _, err := st.CreateTenant("a.b", tenancy.DefaultLimits()); !errors.Is(err, meshmon.ErrInvalidName) {
		t.Errorf("tenant a.b: %v, want ErrInvalidName", err)
	}
	lim := tenancy.DefaultLimits()
	lim.Streams = 0
	if _, err := st.CreateTenant("acme", lim); err == nil {
		t.Error("a tenant without streams was accepted")
	}
	a, err := st.CreateTenant("acme", tenancy.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateTenant("acme", tenancy.DefaultLimits()); !errors.Is(err, tenancy.ErrExists) {
		t.Fatalf("a second acme: %v, want ErrExists", err)
	}
	ac, err := jwt.DecodeAccountClaims(a.JWT)
	if err != nil {
		t.Fatal(err)
	}
	if ac.Name != "acme" || ac.Limits.JetStreamLimits.DiskStorage != tenancy.DefaultLimits().DiskBytes || len(ac.SigningKeys) != 1 {
		t.Fatalf("account claims: %+v", ac)
	}
	lim = tenancy.DefaultLimits()
	lim.DiskBytes = 1 << 30
	if a, err = st.SetLimits("acme", lim); err != nil || a.Limits.DiskBytes != 1<<30 {
		t.Fatalf("set limits: %v, %+v", err, a.Limits)
	}
	if _, err := st.CreateTenant("beta", tenancy.DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	ts, err := st.Tenants()
	if err != nil || len(ts) != 2 || ts[0].Name != "acme" || ts[1].Name != "beta" {
		t.Fatalf("tenants: %v, %+v", err, ts)
	}
	if err := st.RemoveTenant("beta"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Tenant("beta"); !errors.Is(err, tenancy.ErrNoTenant) {
		t.Fatalf("removed tenant: %v, want ErrNoTenant", err)
	}
}

func TestIssueAndRevoke(t *testing.T) {
	st := newStore(t)
	if _, err := st.CreateTenant("acme", tenancy.DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.IssueUser("acme", "p1", tenancy.RolePoller, ""); !errors.Is(err, meshmon.ErrInvalidName) {
		t.Fatalf("a poller without a site: %v", err)
	}
	if _, _, err := st.IssueUser("acme", "n1", tenancy.RoleNOC, "s1"); err == nil {
		t.Fatal("a NOC user with a site was accepted")
	}
	if _, _, err := st.IssueUser("acme", "x", "root", ""); err == nil {
		t.Fatal("role root was accepted")
	}
	if _, _, err := st.IssueUser("nobody", "x", tenancy.RoleNOC, ""); !errors.Is(err, tenancy.ErrNoTenant) {
		t.Fatalf("a user of no tenant: %v", err)
	}
	u, creds, err := st.IssueUser("acme", "p1", tenancy.RolePoller, "s1")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.ParseDecoratedJWT(creds)
	if err != nil {
		t.Fatal(err)
	}
	uc, err := jwt.DecodeUserClaims(tok)
	if err != nil {
		t.Fatal(err)
	}
	if uc.Subject != u.PublicKey || !uc.HasEmptyPermissions() {
		t.Fatalf("poller claims: %+v; want none of its own (its site key's scope has them)", uc.Permissions)
	}
	if ec := effectiveClaims(t, st, "acme", creds); !ec.Pub.Allow.Contains("ev.s1.>") || ec.Pub.Allow.Contains("ev.>") {
		t.Fatalf("poller permissions: %+v", ec.Permissions)
	}
	if id, err := tenancy.CredsIdentity(creds); err != nil || id != (tenancy.Identity{User: "p1", Tenant: "acme", Role: tenancy.RolePoller, Site: "s1"}) {
		t.Fatalf("identity of the poller's credential: %+v, %v", id, err)
	}
	if _, err := tenancy.CredsIdentity([]byte("not a creds file")); err == nil {
		t.Fatal("the identity of a file that is no credential was read")
	}
	credsFile := filepath.Join(t.TempDir(), "p1.creds")
	if err := tenancy.WriteFile(credsFile, creds); err != nil {
		t.Fatal(err)
	}
	if r := tenancy.CredsFileRole(credsFile); r != tenancy.RolePoller {
		t.Fatalf("role of the poller's credentials file: %q", r)
	}
	if r := tenancy.CredsFileRole(credsFile + ".missing"); r != "" {
		t.Fatalf("role of a missing file: %q", r)
	}
	if _, _, err := st.IssueUser("acme", "p1", tenancy.RolePoller, "s1"); !errors.Is(err, tenancy.ErrExists) {
		t.Fatalf("p1 again: %v, want ErrExists", err)
	}
	a, err := st.RevokeUser("acme", "p1")
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Users) != 1 || !a.Users[0].Revoked {
		t.Fatalf("users after the revocation: %+v", a.Users)
	}
	if _, err := st.RevokeUser("acme", "p9"); !errors.Is(err, tenancy.ErrNoUser) {
		t.Fatalf("revoke p9: %v, want ErrNoUser", err)
	}
	// A revoked name can be issued again, with a new key.
	u2, _, err := st.IssueUser("acme", "p1", tenancy.RolePoller, "s1")
	if err != nil || u2.PublicKey == u.PublicKey {
		t.Fatalf("issue p1 again: %v", err)
	}
}

// central starts a central peer in operator mode with st's trust.
func central(t *testing.T, st *tenancy.Store) *peer.Peer {
	t.Helper()
	trust, err := st.Trust()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "trust.json")
	b, _ := jsonMarshal(trust)
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
	return p
}

// siteServer starts a stock nats-server in operator mode on st's trust,
// with a full resolver and JetStream, and returns its client URL: a
// server that keeps every site's poller key, as a poller's own site keeps
// its site's, so that a poller credential connects and the server expands
// its key's template. A central peer refuses pollers (it drops the sites'
// poller keys, peer.keepCentralClaims).
func siteServer(t *testing.T, st *tenancy.Store) string {
	t.Helper()
	trust, err := st.Trust()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "operator: %q\nsystem_account: %q\n", trust.Operator, trust.SystemAccount)
	fmt.Fprintf(&b, "resolver: { type: full, dir: %q, allow_delete: true }\nresolver_preload: {\n", filepath.Join(t.TempDir(), "resolver"))
	for pub, tok := range trust.Preload {
		fmt.Fprintf(&b, "  %s: %q\n", pub, tok)
	}
	b.WriteString("}\n")
	o := &server.Options{}
	if err := o.ProcessConfigString(b.String()); err != nil {
		t.Fatal(err)
	}
	o.Host, o.Port, o.NoSigs, o.NoLog = "127.0.0.1", -1, true, true
	o.JetStream, o.StoreDir = true, t.TempDir()
	o.MaxControlLine = peer.MaxControlLine // a user JWT's CONNECT line, as a peer takes it
	srv, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("the nats-server did not start")
	}
	return srv.ClientURL()
}

func connectCreds(t *testing.T, url string, creds []byte) (*nats.Conn, error) {
	t.Helper()
	auth, err := tenancy.CredsOption(creds)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url, auth, nats.MaxReconnects(0))
	if err == nil {
		t.Cleanup(nc.Close)
	}
	return nc, err
}

// TestOperatorMode: tenants pushed at run time can connect, are walled off
// from each other, and a revoked user is refused.
func TestOperatorMode(t *testing.T) {
	st := newStore(t)
	url := siteServer(t, st) // pollers connect: not a central peer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sysCreds, err := st.SystemCreds(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	sys, err := connectCreds(t, url, sysCreds)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"acme", "beta"} {
		tn, err := st.CreateTenant(name, tenancy.DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		if err := tenancy.Push(ctx, sys, tn.JWT); err != nil {
			t.Fatal(err)
		}
	}
	opsJWT, _, err := st.OpsAccount()
	if err != nil {
		t.Fatal(err)
	}
	if err := tenancy.Push(ctx, sys, opsJWT); err != nil {
		t.Fatal(err)
	}
	opsCreds, err := st.OpsCreds("ops", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	ops, err := connectCreds(t, url, opsCreds)
	if err != nil {
		t.Fatal(err)
	}
	opsSub, err := ops.SubscribeSync(tenancy.OpsSubject("*"))
	if err != nil {
		t.Fatal(err)
	}
	if err := ops.Flush(); err != nil {
		t.Fatal(err)
	}
	issue := func(tenant, user string, role tenancy.Role, site string) []byte {
		if role == tenancy.RolePoller { // the site's poller key, pushed as the CLI does
			tn, added, err := st.EnsurePollerKey(tenant, site)
			if err != nil {
				t.Fatal(err)
			}
			if added {
				if err := tenancy.Push(ctx, sys, tn.JWT); err != nil {
					t.Fatal(err)
				}
			}
		}
		_, creds, err := st.IssueUser(tenant, user, role, site)
		if err != nil {
			t.Fatal(err)
		}
		return creds
	}
	nocA, err := connectCreds(t, url, issue("acme", "noc", tenancy.RoleNOC, ""))
	if err != nil {
		t.Fatal(err)
	}
	pollA, err := connectCreds(t, url, issue("acme", "p1", tenancy.RolePoller, "s1"))
	if err != nil {
		t.Fatal(err)
	}
	pollB, err := connectCreds(t, url, issue("beta", "p1", tenancy.RolePoller, "s1"))
	if err != nil {
		t.Fatal(err)
	}
	// Each tenant's streams take its events and republish them as they
	// store them (as a site's do): a NOC's live feed and the ops view
	// see what is stored, on the stored feed.
	for _, name := range []string{"acme", "beta"} {
		admin, err := st.AdminCreds(name, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		nc, err := connectCreds(t, url, admin)
		if err != nil {
			t.Fatal(err)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		lim := bus.DefaultStreamLimits()
		lim.EventsMaxBytes, lim.MetricsMaxBytes = 1<<20, 1<<20
		if err := bus.EnsureStreams(ctx, js, lim); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := nocA.SubscribeSync("ev.>"); err != nil {
		t.Fatal(err)
	}
	eventually.NoError(t, 5*time.Second, "the permissions violation of a raw ev.> subscription", func() error {
		if err := nocA.LastError(); err == nil || !strings.Contains(err.Error(), "Permissions Violation") {
			return fmt.Errorf("a NOC subscribed to the raw ev.>: %v", err)
		}
		return nil
	})
	nocA, err = connectCreds(t, url, issue("acme", "noc-live", tenancy.RoleNOC, ""))
	if err != nil {
		t.Fatal(err)
	}
	got, err := nocA.SubscribeSync("stored.ev.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nocA.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct {
		nc      *nats.Conn
		subject string
	}{{pollB, "ev.s1.d1.trap"}, {pollA, "ev.s2.d1.trap"}, {pollA, "ev.s1.d1.trap"}} {
		if err := m.nc.Publish(m.subject, []byte(m.subject)); err != nil {
			t.Fatal(err)
		}
		_ = m.nc.Flush()
	}
	msg, err := got.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Subject != "stored.ev.s1.d1.trap" {
		t.Fatalf("NOC of acme got %s", msg.Subject)
	}
	if m, err := got.NextMsg(200 * time.Millisecond); err == nil {
		t.Fatalf("NOC of acme also got %s (%q): another tenant's or another site's", m.Subject, m.Data)
	}
	// The ops view sees both tenants' events, each under its tenant's
	// name (the poller's publish into another site was refused).
	seen := map[string]bool{}
	for range 2 {
		m, err := opsSub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("ops view: %v (have %v)", err, seen)
		}
		seen[m.Subject] = true
	}
	for _, want := range []string{"tenants.beta.ev.s1.d1.trap", "tenants.acme.ev.s1.d1.trap"} {
		if !seen[want] {
			t.Fatalf("the ops view saw %v, not %s", seen, want)
		}
	}
	// The ops credential reads no tenant's streams: its account imports
	// their live events only (the console replays them through central's
	// own connection in each tenant's account, peer.TenantEvents).
	for _, prefix := range []string{"tenants.acme.js.API", "$JS.API"} {
		ojs, err := jetstream.NewWithAPIPrefix(ops, prefix)
		if err != nil {
			t.Fatal(err)
		}
		rctx, rcancel := context.WithTimeout(ctx, time.Second)
		if _, err := ojs.Stream(rctx, bus.EventsStream); err == nil {
			t.Fatalf("the ops credential read an EVENTS stream through %s", prefix)
		}
		rcancel()
	}
	if err := ops.Publish("tenants.acme.ev.s1.d1.trap", []byte("x")); err != nil {
		t.Fatal(err)
	}
	eventually.NoError(t, 5*time.Second, "the permissions violation of an ops publish", func() error {
		if err := ops.LastError(); err == nil || !strings.Contains(err.Error(), "Permissions Violation") {
			return fmt.Errorf("the ops credential published to tenants.acme.ev.s1.d1.trap: %v", err)
		}
		return nil
	})

	// The NOC cannot publish, and its JetStream API is read-only.
	js, err := jetstream.New(nocA)
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithTimeout(ctx, time.Second)
	defer rcancel()
	if _, err := js.CreateStream(rctx, jetstream.StreamConfig{Name: "X", Subjects: []string{"x"}}); err == nil {
		t.Fatal("the NOC created a stream")
	}

	// Revoked: the same credentials are refused.
	creds := issue("acme", "noc2", tenancy.RoleNOC, "")
	if _, err := connectCreds(t, url, creds); err != nil {
		t.Fatal(err)
	}
	a, err := st.RevokeUser("acme", "noc2")
	if err != nil {
		t.Fatal(err)
	}
	if err := tenancy.Push(ctx, sys, a.JWT); err != nil {
		t.Fatal(err)
	}
	if _, err := connectCreds(t, url, creds); err == nil {
		t.Fatal("revoked credentials were accepted")
	}

	// A tenant removed from central can no longer connect.
	if err := st.Unpush(ctx, sys, "beta"); err != nil {
		t.Fatal(err)
	}
	if _, err := connectCreds(t, url, issue("beta", "p2", tenancy.RolePoller, "s1")); err == nil {
		t.Fatal("a user of a removed tenant connected")
	}
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

func TestIssueSite(t *testing.T) {
	st := newStore(t)
	if _, err := st.CreateTenant("acme", tenancy.DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	b, err := st.IssueSite("acme", "paris")
	if err != nil {
		t.Fatal(err)
	}
	if b.Account == "" || b.AccountJWT == "" || len(b.LeafCreds) == 0 || len(b.UpkeepCreds) == 0 || b.Trust.Operator == "" {
		t.Fatalf("bundle: %+v", b)
	}
	for _, secret := range []string{"SO", "SA"} { // operator and account seeds
		if strings.Contains(string(b.LeafCreds)+string(b.UpkeepCreds)+b.AccountJWT, "\n"+secret) {
			t.Fatalf("the bundle holds a %s... seed", secret)
		}
	}
	if _, err := st.IssueSite("acme", "paris"); !errors.Is(err, tenancy.ErrExists) {
		t.Fatalf("a second bundle for paris: %v, want ErrExists", err)
	}
	if _, err := st.RevokeUser("acme", "leaf-paris"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.RevokeUser("acme", "site-paris"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.IssueSite("acme", "paris"); err != nil {
		t.Fatalf("a new bundle after revoking the site's users: %v", err)
	}
}

// TestOperatorModeRemovePeer: in operator mode the system account, signed
// from the key store, removes a central peer that is gone from the cluster;
// one that runs is refused.
func TestOperatorModeRemovePeer(t *testing.T) {
	st := newStore(t)
	trust, err := st.Trust()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "trust.json")
	b, _ := jsonMarshal(trust)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	routes := make([]string, 3)
	for i := range routes {
		routes[i] = freeAddr(t)
	}
	var peers []*peer.Peer
	for i := range routes {
		cfg := peer.DefaultConfig()
		cfg.Role, cfg.Name, cfg.Listen, cfg.DataDir, cfg.Trust = peer.RoleCentral, fmt.Sprintf("c%d", i+1), "127.0.0.1:0", t.TempDir(), path
		cfg.Insecure = true
		cfg.Cluster.Listen = routes[i]
		for j := range routes {
			if j != i {
				cfg.Cluster.Routes = append(cfg.Cluster.Routes, "nats-route://"+routes[j])
			}
		}
		p, err := peer.New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = p.Start(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		peers = append(peers, p)
	}
	sysCreds, err := st.SystemCreds(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	sys, err := connectCreds(t, peers[0].ClientURL(), sysCreds)
	if err != nil {
		t.Fatal(err)
	}
	// The meta leader alone answers: each request is bounded.
	ctx := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		t.Cleanup(cancel)
		return ctx
	}
	eventually.NoError(t, time.Minute, "three cluster members", func() error {
		_, members, err := bus.ClusterMembers(ctx(), sys)
		if err == nil && len(members) != 3 {
			err = fmt.Errorf("members %v", members)
		}
		return err
	})
	if _, err := bus.RemoveClusterPeer(ctx(), sys, "c3", false); !errors.Is(err, bus.ErrPeerUp) {
		t.Fatalf("removing a running peer: %v, want ErrPeerUp", err)
	}
	peers[2].Close()
	var left []string
	eventually.NoError(t, time.Minute, "c3 removed from the cluster", func() (err error) {
		left, err = bus.RemoveClusterPeer(ctx(), sys, "c3", false)
		return err
	})
	if strings.Join(left, ",") != "c1,c2" {
		t.Fatalf("members left %v, want c1 and c2", left)
	}
	eventually.NoError(t, 30*time.Second, "c3 gone from the members", func() error {
		_, members, err := bus.ClusterMembers(ctx(), sys)
		if _, ok := members["c3"]; err == nil && ok {
			err = fmt.Errorf("c3 is still a member: %v", members)
		}
		return err
	})
}

func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := freeport.TCP()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// TestOpsAccountDoesNotGrow: each tenant's JWT imports its slice of the
// ops view from the ops account's three exports, and the ops account
// imports nothing of any tenant, so that a tenant's create does not change
// it (issue 19: with one import a tenant, its replay API, it would have
// passed NATS's 1 MB message size at about 4,800 tenants). An ops account
// of a release before, with those imports, loses them at the next create.
func TestOpsAccountDoesNotGrow(t *testing.T) {
	st := newStore(t)
	first, changed, err := st.OpsAccount()
	if err != nil || changed {
		t.Fatalf("the ops account after init: changed %v, %v", changed, err)
	}
	for i := 1; i <= 40; i++ {
		if _, err := st.CreateTenant(fmt.Sprintf("tenant-%03d", i), tenancy.DefaultLimits()); err != nil {
			t.Fatal(err)
		}
	}
	tok, changed, err := st.OpsAccount()
	if err != nil || changed || tok != first {
		t.Fatalf("the ops account after 40 creates: changed %v, the same JWT %v, %v; want it unchanged", changed, tok == first, err)
	}
	oc, err := jwt.DecodeAccountClaims(tok)
	if err != nil {
		t.Fatal(err)
	}
	if len(oc.Exports) != 3 || len(oc.Imports) != 0 {
		t.Fatalf("the ops account has %d exports and %d imports; want 3 and none", len(oc.Exports), len(oc.Imports))
	}
	tn, err := st.Tenant("tenant-007")
	if err != nil {
		t.Fatal(err)
	}
	ac, err := jwt.DecodeAccountClaims(tn.JWT)
	if err != nil {
		t.Fatal(err)
	}
	for _, im := range ac.Imports {
		if im.Account != oc.Subject || !strings.HasPrefix(string(im.Subject), "tenants.tenant-007.") {
			t.Fatalf("tenant-007 imports %s from %s; want its own slice of the ops account's exports", im.Subject, im.Account)
		}
	}
	if len(ac.Imports) != 3 || len(ac.Exports) != 0 {
		t.Fatalf("tenant-007 has %d imports and %d exports; want 3 (events, task requests, task replies) and none", len(ac.Imports), len(ac.Exports))
	}

	// A release before: the ops account imported each tenant's JetStream
	// API for its replays.
	before := *oc
	before.Imports = nil
	for i := 1; i <= 40; i++ {
		tn, err := st.Tenant(fmt.Sprintf("tenant-%03d", i))
		if err != nil {
			t.Fatal(err)
		}
		before.Imports.Add(&jwt.Import{Subject: "$JS.API.>", Account: tn.Account,
			LocalSubject: jwt.RenamingSubject("tenants." + tn.Name + ".js.API.>"), Type: jwt.Service})
	}
	seed, err := os.ReadFile(filepath.Join(st.Dir(), "operator.nk"))
	if err != nil {
		t.Fatal(err)
	}
	op, err := nkeys.FromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	old, err := before.Encode(op)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SaveOpsAccount(old); err != nil {
		t.Fatal(err)
	}
	tok, changed, err = st.OpsAccount()
	if err != nil || !changed {
		t.Fatalf("the ops account of a release before: changed %v, %v; want its replay imports gone", changed, err)
	}
	if oc, err = jwt.DecodeAccountClaims(tok); err != nil || len(oc.Imports) != 0 {
		t.Fatalf("the ops account signed again keeps %d imports (%v); want none", len(oc.Imports), err)
	}
	if err := st.SaveOpsAccount(tok); err != nil {
		t.Fatal(err)
	}
	if _, changed, err = st.OpsAccount(); err != nil || changed {
		t.Fatalf("the ops account once saved: changed %v, %v", changed, err)
	}
	// Only the ops account's own JWT is kept as it.
	if err := st.SaveOpsAccount(tn.JWT); err == nil {
		t.Fatal("SaveOpsAccount took a tenant's account JWT")
	}
}
