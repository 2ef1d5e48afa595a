package peer

import (
	"errors"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/freeport"
	"github.com/meshmon/meshmon/tenancy"
)

// TestSiteRefusesTokenUsers: a site in operator mode refuses, as clients,
// the leaf and upkeep users of its join token (whoever holds the token
// cannot use them at the site, and revoking them at central, which the
// site cannot hear of once its link is refused, leaves nothing open), while
// the peer makes the tenant's streams with a user of its own and a poller
// credential of the site works.
func TestSiteRefusesTokenUsers(t *testing.T) {
	st, b := acmeAtHQ(t)
	_, pollerCreds, err := st.IssueUser("acme", "p1", tenancy.RolePoller, "hq")
	if err != nil {
		t.Fatal(err)
	}
	// A poller of another site of the tenant: its site's key is in the
	// account JWT the site was given.
	if _, _, err := st.EnsurePollerKey("acme", "branch"); err != nil {
		t.Fatal(err)
	}
	_, branchCreds, err := st.IssueUser("acme", "p2", tenancy.RolePoller, "branch")
	if err != nil {
		t.Fatal(err)
	}
	tn, err := st.Tenant("acme")
	if err != nil {
		t.Fatal(err)
	}
	b.AccountJWT = tn.JWT
	cfg := testConfig(t)
	cfg.SiteTrust = &b.Trust
	// Central is not there: the site works alone.
	addr, err := freeport.TCP()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Central = []string{"nats-leaf://" + addr}
	cfg.Tenants = []SiteTenant{{Name: "acme", Account: b.Account, AccountJWT: b.AccountJWT, LeafCreds: string(b.LeafCreds), UpkeepCreds: string(b.UpkeepCreds)}}
	p := startPeer(t, cfg)
	url := p.ClientURL()
	connect := func(creds []byte) (*nats.Conn, error) {
		auth, err := tenancy.CredsOption(creds)
		if err != nil {
			t.Fatal(err)
		}
		nc, err := nats.Connect(url, auth, nats.MaxReconnects(0), nats.Timeout(5*time.Second))
		if err == nil {
			t.Cleanup(nc.Close)
		}
		return nc, err
	}
	for what, creds := range map[string][]byte{"leaf": b.LeafCreds, "upkeep": b.UpkeepCreds} {
		if _, err := connect(creds); err == nil {
			t.Errorf("the token's %s user connected to the site", what)
		}
	}
	if _, err := connect(branchCreds); !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("a poller of another site at hq: %v; want it refused (authorization violation)", err)
	}
	nc, err := connect(pollerCreds)
	if err != nil {
		t.Fatalf("a poller of the site: %v", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// The streams the peer made with its own user are there.
	if _, err := js.Stream(testCtx(t), bus.EventsStream); err != nil {
		t.Fatalf("the site's events stream: %v", err)
	}
}

// TestLocalAccountClaims: the site's additions keep the account's own
// signing keys and revocations, add its key, and revoke the token's users
// up to now, never earlier than central did; the ops view's imports are
// central's, not the site's.
func TestLocalAccountClaims(t *testing.T) {
	ac := jwt.NewAccountClaims("ACCOUNT")
	ac.SigningKeys.Add("CENTRALKEY")
	ac.Imports.Add(&jwt.Import{Subject: "tenants.acme.ev.>", LocalSubject: "stored.ev.>", Account: "OPS", Type: jwt.Service})
	ac.Revocations = jwt.RevocationList{"OTHER": 100, "LEAF": 5_000_000_000}
	l := &localAccount{skPub: "SITEKEY", revoked: []string{"LEAF", "UPKEEP"}}
	now := time.Unix(2_000_000_000, 0)
	got := l.claims(ac, now)
	if !got.SigningKeys.Contains("CENTRALKEY") || !got.SigningKeys.Contains("SITEKEY") {
		t.Fatalf("signing keys %v", got.SigningKeys.Keys())
	}
	if got.Revocations["OTHER"] != 100 || got.Revocations["LEAF"] != 5_000_000_000 || got.Revocations["UPKEEP"] != now.Unix() {
		t.Fatalf("revocations %v", got.Revocations)
	}
	if len(got.Imports) != 0 {
		t.Fatalf("the site applies the imports %v", got.Imports)
	}
	if ac.SigningKeys.Contains("SITEKEY") || len(ac.Revocations) != 2 || len(ac.Imports) != 1 {
		t.Fatal("the claims given were changed")
	}
}

// TestLocalAccountDropsOtherSitesPollerKeys: the claims a site applies keep
// its own pollers' scoped key, the account's unscoped keys and scoped keys
// of other roles, and drop every other site's poller key; the claims given
// keep them all (central's).
func TestLocalAccountDropsOtherSitesPollerKeys(t *testing.T) {
	ac := jwt.NewAccountClaims("ACCOUNT")
	ac.SigningKeys.Add("CENTRALKEY")
	scoped := func(key, role string) {
		sc := jwt.NewUserScope()
		sc.Key, sc.Role = key, role
		ac.SigningKeys.AddScopedSigner(sc)
	}
	scoped("HQPOLLERS", tenancy.PollerScopeRole("hq"))
	scoped("BRANCHPOLLERS", tenancy.PollerScopeRole("branch"))
	scoped("HQXPOLLERS", tenancy.PollerScopeRole("hqx")) // a site whose name begins with the other's
	scoped("OTHERROLE", "auditor")
	l := &localAccount{site: "hq", skPub: "SITEKEY"}
	got := l.claims(ac, time.Unix(2_000_000_000, 0))
	for _, k := range []string{"CENTRALKEY", "SITEKEY", "HQPOLLERS", "OTHERROLE"} {
		if !got.SigningKeys.Contains(k) {
			t.Errorf("%s dropped", k)
		}
	}
	for _, k := range []string{"BRANCHPOLLERS", "HQXPOLLERS"} {
		if got.SigningKeys.Contains(k) {
			t.Errorf("%s kept: another site's pollers would be accepted at hq", k)
		}
	}
	if len(ac.SigningKeys) != 5 {
		t.Fatalf("the claims given lost keys: %v", ac.SigningKeys.Keys())
	}
}

// TestSiteClaimsBeforeLeafLinks: the site's claims are in force from the
// start even when its leaf links reach central at once. A link looks its
// tenant's account up as soon as it connects; before the claims were
// applied ahead of the server's start, that lookup could race the site's
// own and put the resolver's JWT back over the site's claims (the token's
// users accepted, the peer's own in-process user refused). The test starts
// the site many times, on one data dir, against a listener that accepts
// every connection; a poller of the site stores an event each time, and
// finds the ones before.
func TestSiteClaimsBeforeLeafLinks(t *testing.T) {
	st, b := acmeAtHQ(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(io.Discard, c) }()
		}
	}()
	_, pollerCreds, err := st.IssueUser("acme", "p1", tenancy.RolePoller, "hq")
	if err != nil {
		t.Fatal(err)
	}
	tn, err := st.Tenant("acme")
	if err != nil {
		t.Fatal(err)
	}
	b.AccountJWT = tn.JWT // with the site's poller key
	leafAuth, err := tenancy.CredsOption(b.LeafCreds)
	if err != nil {
		t.Fatal(err)
	}
	pollerAuth, err := tenancy.CredsOption(pollerCreds)
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	const starts = 15
	for i := range starts {
		cfg := testConfig(t)
		cfg.DataDir = dataDir
		cfg.SiteTrust = &b.Trust
		cfg.Central = []string{"nats-leaf://" + ln.Addr().String()}
		cfg.Tenants = []SiteTenant{{Name: "acme", Account: b.Account, AccountJWT: b.AccountJWT, LeafCreds: string(b.LeafCreds), UpkeepCreds: string(b.UpkeepCreds)}}
		p := startPeer(t, cfg) // closed below, before the next start
		if nc, err := nats.Connect(p.ClientURL(), leafAuth, nats.MaxReconnects(0), nats.Timeout(5*time.Second)); err == nil {
			nc.Close()
			t.Errorf("start %d: the token's leaf user connected to the site", i)
		}
		nc, err := nats.Connect(p.ClientURL(), pollerAuth, nats.MaxReconnects(0), nats.Timeout(5*time.Second))
		if err != nil {
			t.Fatalf("start %d: the site's poller: %v", i, err)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.Publish(testCtx(t), "ev.hq.d1.trap", []byte("event")); err != nil {
			t.Fatalf("start %d: the poller's event: %v", i, err)
		}
		s, err := js.Stream(testCtx(t), bus.EventsStream)
		if err != nil {
			t.Fatal(err)
		}
		if n := s.CachedInfo().State.Msgs; n != uint64(i+1) {
			t.Errorf("start %d: EVENTS holds %d events, want %d", i, n, i+1)
		}
		nc.Close()
		p.Close()
	}
}

// acmeAtHQ makes an operator's keys with one tenant, acme, and the join
// bundle of its site hq.
func acmeAtHQ(t *testing.T) (*tenancy.Store, tenancy.SiteBundle) {
	t.Helper()
	st, err := tenancy.Init(filepath.Join(t.TempDir(), "keys"), "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateTenant("acme", tenancy.DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	b, err := st.IssueSite("acme", "hq")
	if err != nil {
		t.Fatal(err)
	}
	return st, b
}
