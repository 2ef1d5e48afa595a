package tenancy_test

import (
	"context"
	"errors"
	"strings"
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

// TestPollerKVPermissions: against a real server in operator mode, a
// poller credential writes its own heartbeat and its own site's group keys,
// and nothing else of the two buckets: not another poller's heartbeat, not
// another site's group keys.
func TestPollerKVPermissions(t *testing.T) {
	st := newStore(t)
	url := siteServer(t, st) // pollers connect: not a central peer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sysCreds, err := st.SystemCreds(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	sys, err := connectCreds(t, url, sysCreds)
	if err != nil {
		t.Fatal(err)
	}
	tn, err := st.CreateTenant("acme", tenancy.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if err := tenancy.Push(ctx, sys, tn.JWT); err != nil {
		t.Fatal(err)
	}
	adminCreds, err := st.AdminCreds("acme", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := connectCreds(t, url, adminCreds)
	if err != nil {
		t.Fatal(err)
	}
	ajs, err := jetstream.New(admin)
	if err != nil {
		t.Fatal(err)
	}
	kvs := map[string]jetstream.KeyValue{}
	for _, b := range []string{bus.PollersBucket, bus.GroupBucket} {
		kv, err := ajs.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: b, MaxBytes: 1 << 20, Storage: jetstream.FileStorage})
		if err != nil {
			t.Fatal(err)
		}
		kvs[b] = kv
	}
	_, creds, err := st.IssueUser("acme", "p1", tenancy.RolePoller, "s1")
	if err != nil {
		t.Fatal(err)
	}
	if tn, err = st.Tenant("acme"); err != nil { // with the key of s1's pollers
		t.Fatal(err)
	}
	if err := tenancy.Push(ctx, sys, tn.JWT); err != nil {
		t.Fatal(err)
	}
	pnc, err := connectCreds(t, url, creds)
	if err != nil {
		t.Fatal(err)
	}
	pjs, err := jetstream.New(pnc)
	if err != nil {
		t.Fatal(err)
	}
	put := func(bucket, key string) error {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := pjs.Publish(pctx, bus.KVSubject(bucket, key), []byte(`{}`))
		return err
	}
	for _, ok := range []struct{ bucket, key string }{
		{bus.PollersBucket, bus.PollerKey("s1", "p1")},
		{bus.GroupBucket, bus.GroupLeaderKey("s1")},
		{bus.GroupBucket, bus.GroupAssignmentKey("s1")},
		{bus.GroupBucket, bus.ShardKey("s1", "0123456789abcdef")}, // a shard of it
	} {
		if err := put(ok.bucket, ok.key); err != nil {
			t.Errorf("%s %s: %v", ok.bucket, ok.key, err)
		}
	}
	for _, refused := range []struct{ bucket, key string }{
		{bus.PollersBucket, bus.PollerKey("s1", "p2")}, // another poller's heartbeat
		{bus.PollersBucket, bus.PollerKey("s2", "p1")}, // its name at another site
		{bus.GroupBucket, bus.GroupLeaderKey("s2")},    // another site's group
		{bus.GroupBucket, bus.GroupAssignmentKey("s2")},
		{bus.GroupBucket, bus.ShardKey("s2", "0123456789abcdef")},
		{bus.GroupBucket, "leader"}, // the keys of an older release
		{bus.DevicesBucket, "d1"},
	} {
		if err := put(refused.bucket, refused.key); err == nil {
			t.Errorf("%s %s: written", refused.bucket, refused.key)
		}
		if kv := kvs[refused.bucket]; kv != nil {
			if _, err := kv.Get(ctx, refused.key); !errors.Is(err, jetstream.ErrKeyNotFound) {
				t.Errorf("%s %s: %v, want no such key", refused.bucket, refused.key, err)
			}
		}
	}

	// The group's presence probes (bus.PresenceSubject): p1 answers on
	// its own subject, another poller of its site asks there and gets the
	// answer; that poller may not answer for p1.
	poller := func(name string, creds []byte) *nats.Conn {
		auth, err := tenancy.CredsOption(creds)
		if err != nil {
			t.Fatal(err)
		}
		nc, err := nats.Connect(url, auth, nats.CustomInboxPrefix(tenancy.InboxPrefix(name)), nats.MaxReconnects(0))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	p1 := poller("p1", creds)
	if _, err := p1.Subscribe(bus.PresenceSubject("s1", "p1"), func(m *nats.Msg) { _ = m.Respond([]byte("p1 here")) }); err != nil {
		t.Fatal(err)
	}
	if err := p1.Flush(); err != nil || p1.LastError() != nil {
		t.Fatalf("p1's presence subscription: %v, %v", err, p1.LastError())
	}
	_, creds2, err := st.IssueUser("acme", "p2", tenancy.RolePoller, "s1")
	if err != nil {
		t.Fatal(err)
	}
	p2 := poller("p2", creds2)
	if m, err := p2.Request(bus.PresenceSubject("s1", "p1"), nil, 5*time.Second); err != nil || string(m.Data) != "p1 here" {
		t.Fatalf("p2 asking for p1's presence: %v", err)
	}
	if _, err := p2.Subscribe(bus.PresenceSubject("s1", "p1"), func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 5*time.Second, "p2's subscription to p1's presence refused", func() bool {
		err := p2.LastError()
		return errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), "Subscription")
	})
}

// TestPollerSiteKey: each site's pollers get one signing key of the
// tenant's account, scoped to the site, made once (the account JWT changes
// the first time only); the site's poller users are signed with it and
// carry no permissions of their own, the key's template having them with
// {{name()}} for the user's name; a site's join token carries the account
// with its key.
func TestPollerSiteKey(t *testing.T) {
	st := newStore(t)
	if _, err := st.CreateTenant("acme", tenancy.DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	scopes := func(tok string) map[string]*jwt.UserScope {
		ac, err := jwt.DecodeAccountClaims(tok)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]*jwt.UserScope{}
		for k, sc := range ac.SigningKeys {
			if us, ok := sc.(*jwt.UserScope); ok {
				out[us.Role] = us
				if us.Key != k {
					t.Errorf("scope of %s names key %s", k, us.Key)
				}
			}
		}
		return out
	}
	t1, added, err := st.EnsurePollerKey("acme", "s1")
	if err != nil || !added {
		t.Fatalf("first key of s1: added %v, %v", added, err)
	}
	t2, added, err := st.EnsurePollerKey("acme", "s1")
	if err != nil || added || t2.JWT != t1.JWT {
		t.Fatalf("second call for s1: added %v, JWT changed %v, %v; want nothing done", added, t2.JWT != t1.JWT, err)
	}
	sc := scopes(t1.JWT)[tenancy.PollerScopeRole("s1")]
	if sc == nil {
		t.Fatalf("no scoped key of role %s in %v", tenancy.PollerScopeRole("s1"), scopes(t1.JWT))
	}
	if !sc.Template.Pub.Allow.Contains("$KV.pollers.s1.{{name()}}") || !sc.Template.Sub.Allow.Contains("_INBOX.{{name()}}.>") ||
		!sc.Template.Pub.Allow.Contains("ev.s1.>") || sc.Template.Pub.Allow.Contains("ev.>") {
		t.Fatalf("s1's template: %+v", sc.Template.Permissions)
	}
	if _, _, err := st.EnsurePollerKey("acme", "Bad.Site"); !errors.Is(err, meshmon.ErrInvalidName) {
		t.Fatalf("a key for a bad site name: %v", err)
	}

	for _, user := range []string{"p1", "p2"} {
		_, creds, err := st.IssueUser("acme", user, tenancy.RolePoller, "s1")
		if err != nil {
			t.Fatal(err)
		}
		uc := userClaims(t, creds) // DecodeUserClaims verifies the signature
		if uc.Issuer != sc.Key || uc.IssuerAccount != t1.Account {
			t.Fatalf("%s signed by %s of %s; want s1's poller key %s of %s", user, uc.Issuer, uc.IssuerAccount, sc.Key, t1.Account)
		}
		if !uc.HasEmptyPermissions() {
			t.Fatalf("%s carries permissions of its own: %+v", user, uc.UserPermissionLimits)
		}
		if ec := effectiveClaims(t, st, "acme", creds); !ec.Pub.Allow.Contains("$KV.pollers.s1."+user) || !ec.Sub.Allow.Contains("_INBOX."+user+".>") {
			t.Fatalf("%s's permissions: %+v", user, ec.Permissions)
		}
	}
	if t3, err := st.Tenant("acme"); err != nil || t3.JWT != t1.JWT {
		t.Fatalf("issuing pollers of s1 changed the account (%v)", err)
	}

	// A site's join token carries its pollers' key; other sites' keys
	// are kept.
	b, err := st.IssueSite("acme", "s2")
	if err != nil {
		t.Fatal(err)
	}
	got := scopes(b.AccountJWT)
	if got[tenancy.PollerScopeRole("s2")] == nil || got[tenancy.PollerScopeRole("s1")] == nil || len(got) != 2 {
		t.Fatalf("the token's account has the poller keys %v; want s1's and s2's", got)
	}
	if got[tenancy.PollerScopeRole("s2")].Key == sc.Key {
		t.Fatal("s2's pollers share s1's key")
	}
}
