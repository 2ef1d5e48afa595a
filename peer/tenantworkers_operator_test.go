package peer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/alarm"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/bus/alarmbus"
	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/tenancy"
)

// publishStateEvents publishes, at a site, kind events of each device.
func publishStateEvents(t *testing.T, js jetstream.JetStream, site, kind, parent string, devices ...string) {
	t.Helper()
	var msgs []meshmon.Message
	for _, d := range devices {
		now := time.Now().UTC()
		ev := meshmon.Event{SpecVersion: "1.0", ID: fmt.Sprintf("%s-%s-%d", d, kind, now.UnixNano()), Type: meshmon.EventTypePrefix + kind, Time: now, Subject: d,
			Data: meshmon.EventData{Site: site, Device: d, Kind: kind, Check: meshmon.CheckICMP, Severity: meshmon.SeverityCritical}}
		if d != "router" {
			ev.Data.Parent = parent
		}
		b, _ := json.Marshal(ev)
		msgs = append(msgs, meshmon.Message{Stream: meshmon.StreamEvents, Site: site, Device: d, Kind: kind, Time: now, ID: ev.ID, Data: b})
	}
	if got, err := bus.NewPublisher(js).PublishBatch(testCtx(t), msgs); err != nil || got != len(msgs) {
		t.Fatalf("publish at %s: %d of %d, %v", site, got, len(msgs), err)
	}
}

// leaseHolder reads which peer holds the tenant's lease.
func leaseHolder(ctx context.Context, js jetstream.JetStream) (string, error) {
	kv, err := js.KeyValue(ctx, TenantLeaseBucket)
	if err != nil {
		return "", err
	}
	e, err := kv.Get(ctx, TenantLeaseKey)
	if err != nil {
		return "", err
	}
	var l TenantLease
	return l.Peer, json.Unmarshal(e.Value(), &l)
}

// operatorStore makes a key store, as meshmon init does, and the trust
// file central peers run with in operator mode.
func operatorStore(t *testing.T) (st *tenancy.Store, trustFile string) {
	t.Helper()
	st, err := tenancy.Init(filepath.Join(t.TempDir(), "keys"), "test")
	if err != nil {
		t.Fatal(err)
	}
	trust, err := st.Trust()
	if err != nil {
		t.Fatal(err)
	}
	trustFile = filepath.Join(t.TempDir(), "trust.json")
	if b, err := json.Marshal(trust); err != nil {
		t.Fatal(err)
	} else if err := os.WriteFile(trustFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return st, trustFile
}

// operatorCentralConfig is the config of a central peer in operator mode
// on trustFile (operatorStore).
func operatorCentralConfig(t *testing.T, name, trustFile string) Config {
	cfg := centralConfig(t, name)
	cfg.Trust, cfg.LeafPassword = trustFile, ""
	return cfg
}

// startOperatorCentral starts one central peer in operator mode, on a key
// store of its own.
func startOperatorCentral(t *testing.T) (*tenancy.Store, *Peer) {
	t.Helper()
	st, trustFile := operatorStore(t)
	return st, startPeer(t, operatorCentralConfig(t, "c1", trustFile))
}

// pushTenants creates each tenant of names in st, with the default
// limits, and pushes its account to central over sys.
func pushTenants(t *testing.T, ctx context.Context, st *tenancy.Store, sys *nats.Conn, names ...string) []tenancy.Tenant {
	t.Helper()
	var out []tenancy.Tenant
	for _, name := range names {
		tn, err := st.CreateTenant(name, tenancy.DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		if err := tenancy.Push(ctx, sys, tn.JWT); err != nil {
			t.Fatal(err)
		}
		out = append(out, tn)
	}
	return out
}

// credsConn connects to url with creds (a .creds file's bytes), closed
// when the test ends.
func credsConn(t *testing.T, url string, creds []byte, opts ...nats.Option) *nats.Conn {
	t.Helper()
	auth, err := tenancy.CredsOption(creds)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url, append(opts, auth)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// TestTenantWorkersStartAtTheFirstEvent: in operator mode a tenant's
// workers (ten streams, four consumers, 63 goroutines) start at its first
// event, not at its creation; before it, the tenant lists no alarm, a
// NOC's maintenance window is refused without starting them, and an
// admin's wakes central (bus.WakeCentral), which starts them.
func TestTenantWorkersStartAtTheFirstEvent(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, p := startOperatorCentral(t)
	connect := func(creds []byte) *nats.Conn { return credsConn(t, p.ClientURL(), creds) }
	sysCreds, err := st.SystemCreds(0)
	if err != nil {
		t.Fatal(err)
	}
	tn, err := st.CreateTenant("acme", tenancy.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if err := tenancy.Push(ctx, connect(sysCreds), tn.JWT); err != nil {
		t.Fatal(err)
	}
	adminCreds, err := st.AdminCreds("acme", 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	cjs, err := jetstream.New(connect(adminCreds))
	if err != nil {
		t.Fatal(err)
	}
	lim := bus.DefaultStreamLimits()
	lim.EventsMaxBytes, lim.MetricsMaxBytes = 16<<20, 16<<20
	eventually.NoError(t, time.Minute, "the tenant's streams", func() error { return bus.EnsureStreams(ctx, cjs, lim) })
	// And its tenant bucket, as provisioning makes it (where an admin
	// wakes central: bus.WakeCentral).
	if err := bus.PutAccountJWT(ctx, cjs, tn.JWT, 1); err != nil {
		t.Fatal(err)
	}

	// Two looks for tenants after its EVENTS exists: the second began
	// after the stream was made.
	looks := p.tenantLooks.Load()
	eventually.True(t, 30*time.Second, "two looks for tenants", func() bool { return p.tenantLooks.Load() >= looks+2 })
	for _, name := range []string{alarm.Stream, "KV_" + TenantLeaseBucket} {
		if _, err := cjs.Stream(ctx, name); !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Fatalf("stream %s of a tenant without events: %v, want none", name, err)
		}
	}
	if as, err := alarmbus.List(ctx, cjs); err != nil || len(as) != 0 {
		t.Fatalf("alarms of a tenant without events: %v, %v; want none", as, err)
	}
	w := alarm.Window{ID: "upgrade", Site: "par", Start: time.Now().UTC(), Duration: meshmon.Duration(time.Hour), TZ: "UTC"}
	// A NOC may not: it may neither wake central (bus.WakeCentral) nor
	// write a window.
	_, nocCreds, err := st.IssueUser("acme", "noc", tenancy.RoleNOC, "")
	if err != nil {
		t.Fatal(err)
	}
	njs, err := jetstream.New(credsConn(t, p.ClientURL(), nocCreds, nats.CustomInboxPrefix(tenancy.InboxPrefix("noc"))))
	if err != nil {
		t.Fatal(err)
	}
	nctx, ncancel := context.WithTimeout(ctx, 5*time.Second)
	err = alarmbus.WaitMaintenance(nctx, njs)
	ncancel()
	if !errors.Is(err, nats.ErrPermissionViolation) {
		t.Fatalf("a NOC's maintenance window: %v, want a permissions violation", err)
	}
	if _, serr := cjs.Stream(ctx, "KV_"+alarm.MaintenanceBucket); !errors.Is(serr, jetstream.ErrStreamNotFound) {
		t.Fatalf("a NOC's refused window (%v) left the maintenance bucket: %v", err, serr)
	}
	for _, name := range []string{alarm.Stream, "KV_" + TenantLeaseBucket} {
		if _, err := cjs.Stream(ctx, name); !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Fatalf("stream %s after a NOC's refused window: %v, want none", name, err)
		}
	}
	// An admin's wakes central, whose processor makes the buckets.
	if err := alarmbus.WaitMaintenance(ctx, cjs); err != nil {
		t.Fatalf("the maintenance bucket, woken: %v", err)
	}
	if err := alarmbus.AddWindow(ctx, cjs, w); err != nil {
		t.Fatalf("a window before the tenant's first event: %v", err)
	}

	publishStateEvents(t, siteJS(t, p, tn.Account), "par", meshmon.KindNodeDown, "", "router")
	eventually.NoError(t, time.Minute, "the first event's alarm", func() error {
		// Each try has its own deadline: a request sent while a stream
		// has no leader goes unanswered.
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		as, err := alarmbus.List(ctx, cjs)
		if err == nil && len(as) != 1 {
			err = fmt.Errorf("%d alarms, want 1", len(as))
		}
		return err
	})
	if ws, err := alarmbus.ListWindows(ctx, cjs); err != nil || len(ws) != 1 {
		t.Fatalf("windows after the workers started: %v, %v; want the one added before", ws, err)
	}
}

// TestTenantWorkersMoveWithTheLeaseOperator: the same in operator mode,
// short: a three-peer central trusting an operator, one tenant whose
// streams are R3 in its own account; the peer holding the tenant's lease
// (in that account) closes between a router's fall and its recovery; the
// next holder, acting in the account over its own signed connection,
// applies the recovery: each change once, in order.
func TestTenantWorkersMoveWithTheLeaseOperator(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("a three-peer central in operator mode")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	st, trustFile := operatorStore(t)
	routes := []string{freeAddr(t), freeAddr(t), freeAddr(t)}
	var central []*Peer
	var urls []string
	for i := range 3 {
		cfg := operatorCentralConfig(t, fmt.Sprintf("c%d", i+1), trustFile)
		joinCluster(&cfg, routes, i)
		central = append(central, startPeer(t, cfg))
		urls = append(urls, central[i].ClientURL())
	}
	connect := func(creds []byte) *nats.Conn {
		return credsConn(t, strings.Join(urls, ","), creds, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	}
	sysCreds, err := st.SystemCreds(0)
	if err != nil {
		t.Fatal(err)
	}
	waitStreamsReady(t, central...)
	eventually.True(t, time.Minute, "the cluster's routes and its JetStream leader", func() bool {
		for _, p := range central {
			if p.Server().NumRoutes() < 2 {
				return false
			}
		}
		return slices.ContainsFunc(central, func(p *Peer) bool { return p.Server().JetStreamIsLeader() })
	})
	sys := connect(sysCreds)
	tn, err := st.CreateTenant("acme", tenancy.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if tn, _, err = st.EnsurePollerKey("acme", "par"); err != nil {
		t.Fatal(err)
	}
	eventually.NoError(t, time.Minute, "the tenant's account pushed", func() error { return tenancy.Push(ctx, sys, tn.JWT) })
	adminCreds, err := st.AdminCreds("acme", 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	cjs, err := jetstream.New(connect(adminCreds))
	if err != nil {
		t.Fatal(err)
	}
	lim := bus.DefaultStreamLimits()
	lim.EventsMaxBytes, lim.MetricsMaxBytes, lim.Replicas = 64<<20, 16<<20, 3
	eventually.NoError(t, time.Minute, "the tenant's streams, R3", func() error {
		ectx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		return bus.EnsureStreams(ectx, cjs, lim) // EVENTS on its subjects: the test publishes as the site would
	})
	// Every peer of the cluster refuses a poller: each drops the sites'
	// poller keys from the claims it applies (keepCentralClaims).
	_, pollerCreds, err := st.IssueUser("acme", "p1", tenancy.RolePoller, "par")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range central {
		eventually.True(t, 30*time.Second, p.cfg.Name+" to refuse a poller", func() bool { return refusedAt(t, p.ClientURL(), pollerCreds) })
	}
	kids := []string{"d1", "d2", "d3"}
	// publish publishes at via what the site's link would deliver.
	publish := func(kind string, via *Peer) {
		t.Helper()
		pjs := siteJS(t, via, tn.Account)
		for _, d := range append([]string{"router"}, kids...) {
			ev := meshmon.Event{SpecVersion: "1.0", Time: time.Now().UTC(), Type: meshmon.EventTypePrefix + kind, Subject: d,
				Data: meshmon.EventData{Tenant: "acme", Site: "par", Device: d, Kind: kind, Check: meshmon.CheckICMP, Severity: meshmon.SeverityCritical}}
			if d != "router" {
				ev.Data.Parent = "router"
			}
			b, _ := json.Marshal(ev)
			eventually.NoError(t, time.Minute, "publish "+kind+" of "+d, func() error {
				_, err := pjs.Publish(ctx, meshmon.EventSubject("par", d, kind), b)
				return err
			})
		}
	}
	publish(meshmon.KindNodeDown, central[0])
	var holder string
	eventually.NoError(t, 90*time.Second, "the alarms, and the lease's holder", func() error {
		// Each try has its own deadline: a request sent while a stream
		// has no leader goes unanswered.
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		as, err := alarmbus.List(ctx, cjs)
		if err == nil && len(as) != 1+len(kids) {
			err = fmt.Errorf("%d alarms, want %d", len(as), 1+len(kids))
		}
		if err != nil {
			return err
		}
		holder, err = leaseHolder(ctx, cjs)
		return err
	})
	i := slices.IndexFunc(central, func(p *Peer) bool { return p.cfg.Name == holder })
	if i < 0 {
		t.Fatalf("lease held by %q, no central peer", holder)
	}
	central[i].Close()
	publish(meshmon.KindNodeUp, central[(i+1)%len(central)])
	eventually.NoError(t, 90*time.Second, "the clears from the lease's next holder", func() error {
		// Each try has its own deadline: a request sent while a stream
		// has no leader goes unanswered.
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		as, err := alarmbus.List(ctx, cjs)
		if err != nil {
			return err
		}
		for _, a := range as {
			if a.State != alarm.StateCleared {
				return fmt.Errorf("alarm %s is %s", a.ID, a.State)
			}
		}
		h, err := leaseHolder(ctx, cjs)
		if err == nil && h == holder {
			err = fmt.Errorf("the lease still names %s", h)
		}
		return err
	})
	s, err := cjs.Stream(ctx, alarm.Stream)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string][]string{}
	for seq := uint64(1); seq <= s.CachedInfo().State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		var c alarm.Change
		if err := json.Unmarshal(m.Data, &c); err != nil {
			t.Fatal(err)
		}
		if want := uint64(len(seen[c.Alarm.ID]) + 1); c.Alarm.Seq != want {
			t.Fatalf("change %s is seq %d of its alarm, want %d (twice, or one lost)", c.MsgID(), c.Alarm.Seq, want)
		}
		seen[c.Alarm.ID] = append(seen[c.Alarm.ID], c.What)
	}
	if got := seen["par.router.icmp"]; !slices.Equal(got, []string{"opened", "cleared"}) {
		t.Fatalf("router's changes: %v", got)
	}
	for _, k := range kids {
		if got := seen[alarm.ID("par", k, "icmp")]; !slices.Equal(got, []string{"opened", "symptom", "cleared"}) {
			t.Fatalf("%s's changes: %v", k, got)
		}
	}
}
