package tenancy_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"

	"github.com/meshmon/meshmon/alarm"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/bus/alarmbus"
	"github.com/meshmon/meshmon/tenancy"
)

// matches reports whether subject matches the NATS subject pattern p
// (tokens, * for one, > for the rest).
func matches(p, subject string) bool {
	pt, st := strings.Split(p, "."), strings.Split(subject, ".")
	for i, tok := range pt {
		switch {
		case tok == ">":
			return len(st) > i
		case i >= len(st):
			return false
		case tok != "*" && tok != st[i]:
			return false
		}
	}
	return len(pt) == len(st)
}

// allowed reports whether perm allows subject: an allow matches and no
// deny does (as nats-server decides).
func allowed(perm jwt.Permission, subject string) bool {
	ok := false
	for _, a := range perm.Allow {
		ok = ok || matches(a, subject)
	}
	for _, d := range perm.Deny {
		ok = ok && !matches(d, subject)
	}
	return ok
}

// effectiveClaims is the user's claims as a server of the tenant's account
// takes them: a user signed with a scoped key (a poller) gets the key's
// template, with its name for {{name()}}.
func effectiveClaims(t *testing.T, st *tenancy.Store, tenant string, creds []byte) *jwt.UserClaims {
	t.Helper()
	uc := userClaims(t, creds)
	tn, err := st.Tenant(tenant)
	if err != nil {
		t.Fatal(err)
	}
	ac, err := jwt.DecodeAccountClaims(tn.JWT)
	if err != nil {
		t.Fatal(err)
	}
	scope, ok := ac.SigningKeys[uc.Issuer]
	if !ok {
		t.Fatalf("user %s: its issuer is no signing key of the account", uc.Name)
	}
	us, ok := scope.(*jwt.UserScope)
	if !ok {
		return uc
	}
	if !uc.HasEmptyPermissions() {
		t.Fatalf("user %s: a scoped user with permissions of its own (the server refuses it)", uc.Name)
	}
	expand := func(l jwt.StringList) jwt.StringList {
		var out jwt.StringList
		for _, s := range l {
			out = append(out, strings.ReplaceAll(s, "{{name()}}", uc.Name))
		}
		return out
	}
	out := *uc
	out.Pub = jwt.Permission{Allow: expand(us.Template.Pub.Allow), Deny: expand(us.Template.Pub.Deny)}
	out.Sub = jwt.Permission{Allow: expand(us.Template.Sub.Allow), Deny: expand(us.Template.Sub.Deny)}
	out.Resp = us.Template.Resp
	return &out
}

func userClaims(t *testing.T, creds []byte) *jwt.UserClaims {
	t.Helper()
	tok, err := jwt.ParseDecoratedJWT(creds)
	if err != nil {
		t.Fatal(err)
	}
	uc, err := jwt.DecodeUserClaims(tok)
	if err != nil {
		t.Fatal(err)
	}
	return uc
}

// TestRolePermissions checks, subject by subject, what each role's user
// may publish and subscribe to: the attacks of issue 16 refused, and what
// the role needs allowed.
func TestRolePermissions(t *testing.T) {
	st := newStore(t)
	if _, err := st.CreateTenant("acme", tenancy.DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	users := map[string]*jwt.UserClaims{}
	for _, u := range []struct {
		name string
		role tenancy.Role
		site string
	}{{"alice", tenancy.RoleNOC, ""}, {"p1", tenancy.RolePoller, "s1"}, {"boss", tenancy.RoleAdmin, ""}} {
		_, creds, err := st.IssueUser("acme", u.name, u.role, u.site)
		if err != nil {
			t.Fatal(err)
		}
		users[u.name] = effectiveClaims(t, st, "acme", creds)
	}
	b, err := st.IssueSite("acme", "s1")
	if err != nil {
		t.Fatal(err)
	}
	users["leaf-s1"], users["site-s1"] = userClaims(t, b.LeafCreds), userClaims(t, b.UpkeepCreds)

	const pub, sub = "pub", "sub"
	for _, c := range []struct {
		user, dir, subject string
		want               bool
	}{
		// NOC: reads and replays events and samples.
		{"alice", sub, "stored.ev.s1.d1.trap", true},
		{"alice", sub, "stored.mx.s1.d1.icmp", true},
		{"alice", sub, "_INBOX.alice.x.1", true},
		{"alice", pub, "$JS.API.STREAM.INFO.EVENTS", true},
		{"alice", pub, "$JS.API.STREAM.MSG.GET.EVENTS", true},
		{"alice", pub, "$JS.API.DIRECT.GET.EVENTS", true},
		{"alice", pub, "$JS.hub.API.STREAM.INFO.EVENTS", false},
		{"alice", pub, "$JS.API.CONSUMER.CREATE.EVENTS.alice", true},
		{"alice", pub, "$JS.API.CONSUMER.CREATE.EVENTS.alice-3.ev.>", true},
		{"alice", pub, "$JS.API.CONSUMER.CREATE.METRICS.alice-1", true},
		{"alice", pub, "$JS.s1.API.CONSUMER.CREATE.METRICS.alice-1", false},
		{"alice", pub, "$JS.API.CONSUMER.MSG.NEXT.EVENTS.alice", true},
		{"alice", pub, "$JS.API.CONSUMER.DELETE.EVENTS.alice-2", true},
		{"alice", pub, "$JS.API.CONSUMER.CREATE.KV_pollers.alice", true},
		{"alice", pub, "$JS.ACK.EVENTS.alice.1.5.5.1700000000.0", true},
		// ... and nothing else: no other user's replies, no '>'.
		{"alice", sub, "_INBOX.boss.x.1", false},
		{"alice", sub, "_INBOX.>", false},
		{"alice", sub, ">", false},
		// Not the raw subjects either: at central only a client
		// publishes there, and nothing stores it.
		{"alice", sub, "ev.s1.d1.trap", false},
		{"alice", sub, "mx.>", false},
		{"alice", sub, "$KV.devices.d1", false},
		{"alice", pub, "ev.s1.d1.trap", false},
		// Its consumers have its names only: not the mesh's source
		// consumers, not another's, not a name from the request body
		// (the 5-token form), a bounded set.
		{"alice", pub, "$JS.API.CONSUMER.CREATE.EVENTS.central-events", false},
		{"alice", pub, "$JS.s1.API.CONSUMER.CREATE.EVENTS.central-events", false},
		{"alice", pub, "$JS.s1.API.CONSUMER.CREATE.EVENTS.central-events.ev.>", false},
		{"alice", pub, "$JS.API.CONSUMER.DURABLE.CREATE.EVENTS.central-events", false},
		// The 7-token create with a one-token filter: the name is the
		// subject's, the filter alice's name (a review found these
		// allowed).
		{"alice", pub, "$JS.API.CONSUMER.CREATE.EVENTS.central-events.alice", false},
		{"alice", pub, "$JS.API.CONSUMER.CREATE.EVENTS.central-events-refetch.alice", false},
		{"alice", pub, "$JS.API.CONSUMER.CREATE.ALARMS.notify.alice", false},
		{"alice", pub, "$JS.API.CONSUMER.CREATE.EVENTS.bob.alice-1", false},
		{"alice", pub, "$JS.API.CONSUMER.DURABLE.CREATE.EVENTS.alice", false},
		{"alice", pub, "$JS.API.CONSUMER.CREATE.EVENTS.alice.alice", true},
		{"alice", pub, "$JS.API.CONSUMER.CREATE.EVENTS.bob", false},
		{"alice", pub, "$JS.API.CONSUMER.DELETE.EVENTS.bob", false},
		{"alice", pub, "$JS.API.CONSUMER.MSG.NEXT.EVENTS.bob", false},
		{"alice", pub, "$JS.API.CONSUMER.CREATE.EVENTS", false},
		{"alice", pub, "$JS.API.CONSUMER.CREATE.EVENTS.alice-4", false},
		{"alice", pub, "$JS.API.CONSUMER.LIST.EVENTS", false},
		{"alice", pub, "$JS.API.CONSUMER.NAMES.EVENTS", false},
		{"alice", pub, "$JS.ACK.EVENTS.central-events.1.5.5.1700000000.0", false},
		{"alice", pub, "$JS.FC.EVENTS.central-events.x", false},
		// No read of the devices bucket, at any domain.
		{"alice", pub, "$JS.API.STREAM.MSG.GET.KV_devices", false},
		// Its info, which status reads (with subjects_filter it lists
		// the keys: device names, no secret).
		{"alice", pub, "$JS.API.STREAM.INFO.KV_devices", true},
		{"alice", pub, "$JS.s1.API.STREAM.MSG.GET.KV_devices", false},
		{"alice", pub, "$JS.API.DIRECT.GET.KV_devices", false},
		{"alice", pub, "$JS.API.DIRECT.GET.KV_devices.$KV.devices.d1", false},
		{"alice", pub, "$JS.API.CONSUMER.CREATE.KV_devices.alice", false},
		{"alice", pub, "$JS.s1.API.CONSUMER.CREATE.KV_devices.alice.$KV.devices.>", false},
		{"alice", pub, "$JS.API.CONSUMER.MSG.NEXT.KV_devices.alice", false},
		// Nor of the notification secrets at central; the channels
		// and the delivery log are readable.
		{"alice", pub, "$JS.API.STREAM.MSG.GET.KV_notify_secrets", false},
		{"alice", pub, "$JS.API.DIRECT.GET.KV_notify_secrets", false},
		{"alice", pub, "$JS.API.DIRECT.GET.KV_notify_secrets.$KV.notify_secrets.hook", false},
		{"alice", pub, "$JS.API.CONSUMER.CREATE.KV_notify_secrets.alice", false},
		{"alice", pub, "$JS.API.CONSUMER.CREATE.KV_notify_secrets.alice.$KV.notify_secrets.>", false},
		{"alice", pub, "$JS.API.DIRECT.GET.KV_notify.$KV.notify.channel.hook", true},
		{"alice", pub, "$JS.API.CONSUMER.CREATE.NOTIFY_LOG.alice", true},
		{"alice", pub, "$KV.notify.channel.hook", false},
		// No change to any stream.
		{"alice", pub, "$JS.API.STREAM.PURGE.EVENTS", false},
		{"alice", pub, "$JS.API.STREAM.DELETE.EVENTS", false},
		{"alice", pub, "$JS.API.STREAM.UPDATE.EVENTS", false},
		{"alice", pub, "$KV.devices.d1", false},
		// Alarms: acts as itself (ack, unack, comment), reads the
		// alarms; never as another, never clears, never writes the
		// bucket or the stream.
		{"alice", pub, "alarmop.alice.ack", true},
		{"alice", pub, "alarmop.alice.unack", true},
		{"alice", pub, "alarmop.alice.comment", true},
		{"alice", pub, "alarmop.alice.clear", false},
		{"alice", pub, "alarmop.boss.ack", false},
		{"alice", pub, "alarmop.*.ack", false},
		{"alice", pub, "alarmop.alice", false},
		{"alice", sub, "alarmop.>", false},
		{"alice", pub, "$JS.API.DIRECT.GET.KV_alarms.$KV.alarms.s1.d1.icmp", true},
		{"alice", pub, "$JS.API.CONSUMER.CREATE.KV_alarms.alice", true},
		{"alice", pub, "$JS.API.CONSUMER.CREATE.ALARMS.alice-1", true},
		{"alice", pub, "$KV.alarms.s1.d1.icmp", false},
		{"alice", pub, "$KV.maintenance.w1", false},
		{"alice", pub, "alarm.s1.d1.icmp", false},
		{"alice", pub, "$JS.API.STREAM.PURGE.ALARMS", false},
		{"alice", pub, "$JS.API.STREAM.DELETE.KV_alarms", false},

		// Poller: its site's subjects, its buckets, its own consumers.
		{"p1", pub, "ev.s1.d1.trap", true},
		{"p1", pub, "mx.s1.d1.icmp", true},
		{"p1", pub, "$KV.pollers.s1.p1", true},
		{"p1", pub, "$KV.group.s1.leader", true},
		{"p1", pub, "$KV.group.s1.assignment", true},
		{"p1", pub, "$KV.pollers.p1", false},
		{"p1", pub, "$KV.pollers.s1.p2", false},
		{"p1", pub, "$KV.group.s2.leader", false},
		{"p1", pub, "$JS.API.CONSUMER.CREATE.KV_devices.w1", true},
		{"p1", pub, "$JS.API.CONSUMER.CREATE.EVENTS.r1.ev.s1.d1.>", true},
		{"p1", pub, "$JS.API.DIRECT.GET.KV_devices.$KV.devices.d1", true},
		{"p1", pub, "$JS.API.DIRECT.GET.KV_notify_secrets.$KV.notify_secrets.hook", false},
		{"p1", pub, "$JS.API.STREAM.MSG.GET.KV_notify_secrets", false},
		{"p1", pub, "$JS.API.CONSUMER.CREATE.KV_notify_secrets.w1", false},
		{"p1", sub, "_INBOX.p1.x.1", true},
		{"p1", pub, "ev.s2.d1.trap", false},
		// Its own consumers' flow control and acks, not the mesh's
		// source consumers' (the site keeper's prompt listens there).
		{"p1", pub, "$JS.FC.KV_devices.w1.abcd", true},
		{"p1", pub, "$JS.ACK.KV_devices.w1.1.5.5.1700000000.0", true},
		{"p1", pub, "$JS.FC.EVENTS.central-events.abcd", false},
		{"p1", pub, "$JS.FC.METRICS.central-metrics.abcd", false},
		{"p1", pub, "$JS.ACK.EVENTS.central-events.1.5.5.1700000000.0", false},
		{"p1", pub, "stored.ev.s1.d1.trap", false},
		{"p1", pub, "$KV.devices.d1", false},
		{"p1", sub, "_INBOX.boss.x.1", false},
		{"p1", sub, "$KV.>", false},
		{"p1", sub, "ev.>", false},
		{"p1", pub, "$JS.API.CONSUMER.CREATE.EVENTS", false},
		{"p1", pub, "$JS.API.CONSUMER.CREATE.EVENTS.central-events", false},
		{"p1", pub, "$JS.API.CONSUMER.CREATE.METRICS.central-metrics.mx.>", false},
		{"p1", pub, "$JS.API.CONSUMER.DELETE.EVENTS.central-events", false},
		{"p1", pub, "$JS.API.CONSUMER.DELETE.EVENTS.central-events-refetch", false},
		{"p1", pub, "$JS.API.CONSUMER.CREATE.METRICS.central-metrics-refetch", false},
		{"p1", pub, "$JS.FC.EVENTS.central-events-refetch.abcd", false},
		{"p1", pub, "$JS.API.CONSUMER.MSG.NEXT.EVENTS.central-events", false},
		{"p1", pub, "$JS.hub.API.STREAM.INFO.EVENTS", false},
		// Consumers of its site's streams and buckets only: at central
		// (where a poller credential signed before its site had a key
		// connects) not the notifications' consumer, not a NOC's, not
		// their acks.
		{"p1", pub, "$JS.API.CONSUMER.CREATE.KV_group.w1.$KV.group.s1.>", true},
		{"p1", pub, "$JS.API.CONSUMER.INFO.KV_pollers.w1", true},
		{"p1", pub, "$JS.API.CONSUMER.DELETE.EVENTS.r1", true},
		{"p1", pub, "$JS.API.CONSUMER.MSG.NEXT.EVENTS.r1", true},
		{"p1", pub, "$JS.ACK.EVENTS.r1.1.5.5.1700000000.0", true},
		{"p1", pub, "$JS.API.CONSUMER.DELETE.ALARMS.notify", false},
		{"p1", pub, "$JS.API.CONSUMER.CREATE.ALARMS.notify.alarm.>", false},
		{"p1", pub, "$JS.API.CONSUMER.MSG.NEXT.ALARMS.notify", false},
		{"p1", pub, "$JS.ACK.ALARMS.notify.1.5.5.1700000000.0", false},
		{"p1", pub, "$JS.API.CONSUMER.CREATE.NOTIFY_LOG.x", false},
		{"p1", pub, "$JS.API.CONSUMER.CREATE.KV_alarms.x", false},
		{"p1", pub, "$JS.API.CONSUMER.CREATE.METRICS.x", false},
		{"p1", pub, "$JS.FC.KV_alarms_processor.x.abcd", false},
		{"p1", pub, "$JS.s2.API.CONSUMER.CREATE.KV_group.w", false},
		{"p1", pub, "$JS.API.STREAM.UPDATE.EVENTS", false},

		// Admin: everything but publishing events and samples.
		// No stream's or bucket's configuration, in any domain: a
		// re-publish would publish as the server, a task request or an
		// alarm action as another user (a review did both).
		{"boss", pub, "$JS.API.STREAM.UPDATE.EVENTS", false},
		{"boss", pub, "$JS.API.STREAM.CREATE.FORGE", false},
		{"boss", pub, "$JS.hub.API.STREAM.CREATE.FORGE", false},
		{"boss", pub, "$JS.s1.API.STREAM.CREATE.FORGE", false},
		{"boss", pub, "$JS.s1.API.STREAM.UPDATE.EVENTS", false},
		{"boss", pub, "$JS.API.STREAM.CREATE.KV_forge", false},
		{"boss", pub, "$JS.API.STREAM.UPDATE.KV_maintenance", false},
		{"boss", pub, "$JS.API.STREAM.RESTORE.FORGE", false},
		{"boss", pub, "$JS.API.STREAM.TEMPLATE.CREATE.FORGE", false},
		// Its streams' reading, purging and consumers stay.
		{"boss", pub, "$JS.API.STREAM.INFO.EVENTS", true},
		{"boss", pub, "$JS.API.STREAM.PURGE.EVENTS", true},
		{"boss", pub, "$JS.s1.API.CONSUMER.CREATE.EVENTS.x", true},
		// Nor the alarms' state, the processor's to write.
		{"boss", pub, "$KV.alarms.s1.d1.snmp", false},
		{"boss", pub, "$KV.alarms_processor.x", false},
		{"boss", pub, "$KV.notify.channel.hook", true},
		{"boss", pub, "$KV.devices.d1", true},
		{"boss", pub, "ev.s1.d1.trap", false},
		{"boss", pub, "stored.ev.s1.d1.trap", false},
		{"boss", pub, "alarmop.boss.clear", true},
		{"boss", pub, "alarmop.alice.ack", false},
		{"boss", pub, "$KV.maintenance.w1", true},
		// ... not the mesh's source consumers' deliveries, acks or flow
		// control, at central or at a site; its own consumers' still.
		{"boss", pub, "meshmon.source.s1.events", false},
		{"boss", sub, "meshmon.source.s1.events", false},
		{"boss", sub, "meshmon.source.>", false},
		{"boss", pub, "$JS.FC.EVENTS.central-events.x1", false},
		{"boss", pub, "$JS.FC.EVENTS.central-events-refetch.x1", false},
		{"boss", pub, "meshmon.source.s1.events-refetch", false},
		{"boss", pub, "$JS.ACK.METRICS.central-metrics.1.2.3.4.5", false},
		{"boss", pub, "$JS.FC.s1.hash.EVENTS.central-events.x1", false},
		{"boss", pub, "$JS.FC.EVENTS.boss-reader.x1", true},
		{"boss", pub, "$JS.ACK.EVENTS.boss-reader.1.2.3.4.5", true},
		{"boss", pub, "meshmon.link.s1.state", true},
		{"boss", sub, "meshmon.link.s1.state", true},
		{"p1", pub, "alarmop.p1.ack", false},
		{"leaf-s1", pub, "alarmop.alice.ack", false},

		// Leaf link, from central's side: its site's source deliveries
		// and the tenant bucket, nothing else.
		{"leaf-s1", pub, "meshmon.source.s1.events", true},
		{"leaf-s1", pub, "$JS.hub.API.DIRECT.GET.KV_tenant.$KV.tenant.account", true},
		// Not a consumer of the tenant bucket: a review filled the
		// account's consumers of it (no other site's watch could be
		// made) and delivered to subjects of its choosing.
		{"leaf-s1", pub, "$JS.hub.API.CONSUMER.CREATE.KV_tenant.w1", false},
		{"leaf-s1", pub, "$JS.API.CONSUMER.CREATE.KV_tenant.w1.$KV.tenant.>", false},
		{"leaf-s1", pub, "$JS.FC.KV_tenant.w1.x", false},
		{"site-s1", pub, "$JS.hub.API.CONSUMER.CREATE.KV_tenant.w1", false},
		{"leaf-s1", sub, "$JS.s1.API.CONSUMER.CREATE.EVENTS.central-events", true},
		{"leaf-s1", sub, "$JS.FC.EVENTS.central-events.x", true},
		{"leaf-s1", sub, "$JS.FC.EVENTS.central-events-refetch.x", true},
		{"leaf-s1", pub, "meshmon.source.s1.events-refetch", true},
		{"leaf-s1", pub, "meshmon.source.s2.events-refetch", false},
		{"leaf-s1", sub, "_INBOX.site-s1.x.1", true},
		{"leaf-s1", pub, "$JSC.R.s1.HASH.EVENTS.central-events.x1", true},
		{"leaf-s1", pub, "$JSC.R.s2.HASH.EVENTS.central-events.x1", false},
		{"leaf-s1", pub, "$JSC.R.x1", false},
		{"leaf-s1", pub, "meshmon.source.s2.events", false},
		{"leaf-s1", pub, "ev.s1.d1.trap", false},
		{"leaf-s1", pub, "ev.s2.d1.trap", false},
		{"leaf-s1", pub, "stored.ev.s1.d1.trap", false},
		{"leaf-s1", sub, "stored.ev.>", false},
		{"leaf-s1", pub, "$KV.devices.d1", false},
		{"leaf-s1", pub, "$JS.API.STREAM.DELETE.EVENTS", false},
		{"leaf-s1", pub, "$JS.hub.API.STREAM.UPDATE.EVENTS", false},
		{"leaf-s1", pub, "$JS.s2.API.STREAM.DELETE.EVENTS", false},
		{"leaf-s1", sub, "$JS.s2.API.CONSUMER.CREATE.EVENTS.central-events", false},
		{"leaf-s1", sub, "_INBOX.boss.x.1", false},
		{"leaf-s1", sub, "ev.>", false},

		// Site upkeep: its streams and source consumers.
		{"site-s1", pub, "$JS.API.STREAM.CREATE.EVENTS", true},
		{"site-s1", pub, "$JS.API.CONSUMER.CREATE.EVENTS.central-events", true},
		{"site-s1", pub, "$JS.hub.API.DIRECT.GET.KV_tenant.$KV.tenant.account", true},
		{"site-s1", sub, "meshmon.source.s1.events", true},
		// Its source consumers' flow-control replies (the keeper's
		// prompt), no other consumer's, no acks.
		{"site-s1", sub, "$JS.FC.EVENTS.central-events.*", true},
		{"site-s1", sub, "$JS.FC.METRICS.central-metrics.*", true},
		{"site-s1", sub, "$JS.FC.METRICS.central-metrics-refetch.*", true},
		{"site-s1", pub, "$JS.API.CONSUMER.CREATE.METRICS.central-metrics-refetch", true},
		{"site-s1", sub, "$JS.FC.EVENTS.alice.*", false},
		{"site-s1", sub, "$JS.FC.>", false},
		{"site-s1", sub, "$JS.ACK.EVENTS.central-events.>", false},
		// The answers to central's resets of its source consumers (the
		// keeper's tap), no other site's, no other reply.
		{"site-s1", sub, "$JSC.R.s1.*.EVENTS.central-events.*", true},
		{"site-s1", sub, "$JSC.R.s1.*.METRICS.central-metrics.*", true},
		{"site-s1", sub, "$JSC.R.s2.*.EVENTS.central-events.*", false},
		{"site-s1", sub, "$JSC.R.>", false},
		{"site-s1", pub, "$JSC.R.s1.x.EVENTS.central-events.y", false},
		{"site-s1", pub, "$JS.API.STREAM.DELETE.EVENTS", false},
		{"site-s1", pub, "$JS.API.STREAM.PURGE.EVENTS", false},
		{"site-s1", pub, "$JS.hub.API.STREAM.UPDATE.EVENTS", false},
		{"site-s1", pub, "$JS.s2.API.STREAM.UPDATE.EVENTS", false},
		{"site-s1", pub, "$KV.devices.d1", false},
		{"site-s1", pub, "ev.s1.d1.trap", false},
		{"site-s1", sub, "meshmon.source.s2.events", false},
		{"site-s1", sub, "_INBOX.boss.x.1", false},
	} {
		uc := users[c.user]
		perm := uc.Pub
		if c.dir == sub {
			perm = uc.Sub
		}
		if got := allowed(perm, c.subject); got != c.want {
			t.Errorf("%s may %s %q: %v, want %v", c.user, c.dir, c.subject, got, c.want)
		}
	}

	// The link's credentials are no client's, and the upkeep's work in
	// the site peer's process only.
	if got := users["leaf-s1"].AllowedConnectionTypes; len(got) != 1 || got[0] != jwt.ConnectionTypeLeafnode {
		t.Errorf("leaf user's connection types %v, want only %s", got, jwt.ConnectionTypeLeafnode)
	}
	if got := users["leaf-s1"].Limits.Subs; got != tenancy.LeafMaxSubs {
		t.Errorf("leaf user's subscriptions limit %d, want %d", got, tenancy.LeafMaxSubs)
	}
	if got := users["site-s1"].AllowedConnectionTypes; len(got) != 1 || got[0] != jwt.ConnectionTypeInProcess {
		t.Errorf("upkeep user's connection types %v, want only %s", got, jwt.ConnectionTypeInProcess)
	}
}

// TestReservedUserNames: no user takes a name whose replies or consumer
// names are another's.
func TestReservedUserNames(t *testing.T) {
	st := newStore(t)
	if _, err := st.CreateTenant("acme", tenancy.DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		role tenancy.Role
		site string
	}{
		{"meshmon-cli", tenancy.RoleNOC, ""}, {"meshmon-cli-reader", tenancy.RoleNOC, ""},
		{"central-events", tenancy.RoleNOC, ""}, {"site-s1", tenancy.RoleNOC, ""},
		{"leaf-s1", tenancy.RolePoller, "s1"}, {"leaf-s2", tenancy.RoleLeaf, "s1"},
	} {
		if _, _, err := st.IssueUser("acme", c.name, c.role, c.site); err == nil || !strings.Contains(err.Error(), c.name) {
			t.Errorf("user %s (%s): %v, want refused with its name", c.name, c.role, err)
		}
	}
	if _, _, err := st.IssueUser("acme", "leaf-s1", tenancy.RoleLeaf, "s1"); err != nil {
		t.Errorf("leaf-s1 as s1's leaf: %v", err)
	}
	// Nor the consumer names of meshmon's own consumer, or of another
	// user (a review found alice-1 issued beside alice, whose second
	// consumer name it is).
	if _, _, err := st.IssueUser("acme", "notify", tenancy.RoleNOC, ""); err == nil || !strings.Contains(err.Error(), "notify") {
		t.Errorf("user notify: %v, want refused", err)
	}
	if _, _, err := st.IssueUser("acme", "alice", tenancy.RoleNOC, ""); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"alice-1", "alice-3"} {
		if _, _, err := st.IssueUser("acme", name, tenancy.RoleNOC, ""); err == nil || !strings.Contains(err.Error(), "would be user alice's") {
			t.Errorf("user %s beside alice: %v, want refused", name, err)
		}
	}
	if _, _, err := st.IssueUser("acme", "alice-4", tenancy.RoleNOC, ""); err != nil {
		t.Errorf("alice-4, whose names are not alice's: %v", err)
	}
	if _, _, err := st.IssueUser("acme", "bob-2", tenancy.RoleNOC, ""); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.IssueUser("acme", "bob", tenancy.RoleNOC, ""); err == nil || !strings.Contains(err.Error(), "would be user bob-2's") {
		t.Errorf("bob beside bob-2: %v, want refused", err)
	}
	if _, err := st.RevokeUser("acme", "bob-2"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.IssueUser("acme", "bob", tenancy.RoleNOC, ""); err != nil {
		t.Errorf("bob once bob-2 is revoked: %v", err)
	}
}

// TestPermissionsFitConnect: a user JWT travels in the client's CONNECT
// line, which a peer takes up to peer.MaxControlLine long (nats-server's
// default, 4 KiB, is too short for a NOC's); a NOC and a poller with the
// longest names a tenant and a user may have connect and read their
// replies, at a stock nats-server set so (a central peer refuses
// pollers).
func TestPermissionsFitConnect(t *testing.T) {
	st := newStore(t)
	url := siteServer(t, st) // pollers connect: not a central peer
	tenant := strings.Repeat("t", 63)
	ten, err := st.CreateTenant(tenant, tenancy.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	sys, err := st.SystemCreds(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	snc, err := connectCreds(t, url, sys)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := tenancy.Push(ctx, snc, ten.JWT); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("n", 63)
	for _, u := range []struct {
		name string
		role tenancy.Role
		site string
	}{{long, tenancy.RoleNOC, ""}, {strings.Repeat("p", 63), tenancy.RolePoller, strings.Repeat("s", 63)}} {
		_, creds, err := st.IssueUser(tenant, u.name, u.role, u.site)
		if err != nil {
			t.Fatal(err)
		}
		// A poller's site key came with its first user.
		tn, err := st.Tenant(tenant)
		if err != nil {
			t.Fatal(err)
		}
		if err := tenancy.Push(ctx, snc, tn.JWT); err != nil {
			t.Fatal(err)
		}
		nc, err := connectCreds(t, url, creds)
		if err != nil {
			t.Fatalf("%s user with a 63-character name: %v", u.role, err)
		}
		if _, err := nc.Request("$JS.API.INFO", nil, 5*time.Second); err != nil && !errors.Is(err, nats.ErrNoResponders) {
			t.Fatalf("%s user's request: %v", u.role, err)
		}
	}
}

// adminClaims returns the claims of an admin issued in a new tenant.
func adminClaims(t *testing.T) *jwt.UserClaims {
	t.Helper()
	st := newStore(t)
	if _, err := st.CreateTenant("acme", tenancy.DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	_, creds, err := st.IssueUser("acme", "boss", tenancy.RoleAdmin, "")
	if err != nil {
		t.Fatal(err)
	}
	uc := userClaims(t, creds)
	return uc
}

// TestAlarmBucketNames: the admin's denial of the alarm processor's buckets
// names them as the processor does.
func TestAlarmBucketNames(t *testing.T) {
	uc := adminClaims(t)
	for _, b := range []string{alarm.Bucket, alarmbus.ProcessorBucket} {
		if allowed(uc.Pub, "$KV."+b+".x") {
			t.Errorf("an admin may write the bucket %s", b)
		}
	}
}

// TestSourceNames: the admin's denial of the mesh's source consumers names
// their delivery subjects and their names as the mesh does.
func TestSourceNames(t *testing.T) {
	uc := adminClaims(t)
	for _, stream := range []string{bus.EventsStream, bus.MetricsStream} {
		for _, deliver := range []string{bus.SourceDeliverSubject("s1", stream), bus.RefetchDeliverSubject("s1", stream)} {
			if allowed(uc.Pub, deliver) || allowed(uc.Sub, deliver) {
				t.Errorf("an admin may publish or subscribe to %s", deliver)
			}
		}
		for _, c := range []string{bus.SourceConsumer(stream), bus.RefetchConsumer(stream)} {
			for _, reply := range []string{"$JS.FC." + stream + "." + c + ".x", "$JS.ACK." + stream + "." + c + ".1.2.3.4.5"} {
				if allowed(uc.Pub, reply) {
					t.Errorf("an admin may publish to %s", reply)
				}
			}
		}
	}
}

// TestKeyStoreAdminMakesStreams: the key store's own user, an admin, makes
// and changes the tenant's streams, which an issued admin may not.
func TestKeyStoreAdminMakesStreams(t *testing.T) {
	st := newStore(t)
	if _, err := st.CreateTenant("acme", tenancy.DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	creds, err := st.AdminCreds("acme", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	uc := userClaims(t, creds)
	for _, subject := range []string{"$JS.API.STREAM.CREATE.EVENTS", "$JS.API.STREAM.UPDATE.EVENTS", "$JS.hub.API.STREAM.UPDATE.EVENTS", "$JS.API.STREAM.CREATE.KV_tenant"} {
		if !allowed(uc.Pub, subject) {
			t.Errorf("the key store's user may not publish %s", subject)
		}
	}
	for _, subject := range []string{"ev.s1.d1.trap", "$KV.alarms.x"} {
		if allowed(uc.Pub, subject) {
			t.Errorf("the key store's user may publish %s", subject)
		}
	}
}
