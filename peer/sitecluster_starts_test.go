package peer

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/tenancy"
)

// siteStarts is how many fresh starts TestSiteClusterFreshStarts makes in
// each mode: MESHMON_SITE_STARTS; without it, one in operator mode and
// none in default mode (what CI runs: TestSiteClusterMemberCut starts a
// default-mode site cluster already).
func siteStarts(t *testing.T, operator bool) int {
	v := os.Getenv("MESHMON_SITE_STARTS")
	if v == "" {
		if operator {
			return 1
		}
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("MESHMON_SITE_STARTS=%q: want a whole number of at least 1", v)
	}
	return n
}

// TestSiteClusterFreshStarts starts a central peer and a site of three
// clustered peers from empty data dirs, again and again, in default and in
// operator mode (MESHMON_SITE_STARTS times in each: run it with 50 to look
// for a rare failure), and requires of every start that each member takes
// a publish and that central holds every event of the site, each once,
// within a minute.
func TestSiteClusterFreshStarts(t *testing.T) {
	if testing.Short() {
		t.Skip("fresh starts of a three-peer site")
	}
	for _, operator := range []bool{false, true} {
		mode := map[bool]string{false: "default", true: "operator"}[operator]
		n := siteStarts(t, operator)
		if n == 0 {
			continue
		}
		t.Run(mode, func(t *testing.T) {
			var ready, arrived []time.Duration
			for i := range n {
				ok := t.Run(fmt.Sprintf("start-%d", i+1), func(t *testing.T) {
					r, a := freshSiteClusterStart(t, operator)
					ready, arrived = append(ready, r), append(arrived, a)
				})
				if !ok {
					break
				}
			}
			t.Logf("%d fresh starts of a three-peer site in %s mode: streams ready %s after the members were started, central holding the 300 events %s after they were published",
				len(ready), mode, spread(ready), spread(arrived))
		})
	}
}

// freshSiteClusterStart is one start of TestSiteClusterFreshStarts. It
// returns how long the site's members took to make their streams, and how
// long central took to hold what was published.
func freshSiteClusterStart(t *testing.T, operator bool) (ready, arrived time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var members []Config
	var cjs jetstream.JetStream
	var publisher func(*Peer) jetstream.JetStream
	if operator {
		members, cjs, publisher = operatorSite(t, ctx)
	} else {
		central := startPeer(t, centralConfig(t, "c1"))
		cjs = peerJS(t, central)
		if err := bus.AddSite(ctx, cjs, "paris", time.Now()); err != nil {
			t.Fatal(err)
		}
		join, err := bus.Join(ctx, cjs)
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			members = append(members, siteConfig(t, "paris", join))
		}
		publisher = func(p *Peer) jetstream.JetStream { return peerJS(t, p) }
	}
	routes := []string{freeAddr(t), freeAddr(t), freeAddr(t)}
	sites := make([]*Peer, 3)
	started := time.Now()
	var wg sync.WaitGroup
	for i, cfg := range members {
		cfg.Name = fmt.Sprintf("paris-%d", i+1)
		joinCluster(&cfg, routes, i)
		wg.Go(func() { sites[i] = startPeer(t, cfg) })
	}
	wg.Wait()
	if t.Failed() { // a start failed in its goroutine
		t.FailNow()
	}
	waitStreamsReady(t, sites...)
	ready = time.Since(started)

	// 100 events through each member, then central must hold all 300.
	published := time.Now()
	for i, p := range sites {
		publishSite(t, publisher(p), "paris", i*100, 100)
	}
	waitCount(t, cjs, "paris", 300, time.Minute)
	arrived = time.Since(published)
	// Each once: every id published, none twice.
	seen := map[string]int{}
	err := bus.Tail(ctx, cjs, bus.TailOptions{Stream: bus.EventsStream, Subject: "ev.paris.>", StartSeq: 1}, func(m bus.TailMsg) error {
		seen[m.Header.Get(jetstream.MsgIDHeader)]++
		return nil
	})
	if err != nil {
		t.Fatalf("read central's events of paris: %v", err)
	}
	for i := range 300 {
		if id := fmt.Sprintf("paris-%d", i); seen[id] != 1 {
			t.Errorf("central holds event %s %d times, want once", id, seen[id])
		}
	}
	return ready, arrived
}

// spread prints the least, the median and the most of ds.
func spread(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	r := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	return fmt.Sprintf("%s-%s (median %s)", r(s[0]), r(s[len(s)-1]), r(s[len(s)/2]))
}

// operatorSite makes a central peer in operator mode with a tenant acme
// and its site paris, as tenant create and site add --tenant do. It
// returns the configs of three members of the site (to be named and
// clustered), a JetStream context of the tenant's admin at central, and
// how to publish at a member as the tenant's poller.
func operatorSite(t *testing.T, ctx context.Context) ([]Config, jetstream.JetStream, func(*Peer) jetstream.JetStream) {
	t.Helper()
	o := newOperatorSite(t, ctx)
	return o.members, o.cjs, o.publisher
}

// operatorSiteParts is what newOperatorSite makes: central (its config,
// to start it again), an admin's JetStream at it, and a way to have one
// at a central started again; the site's members and a poller's
// JetStream at one of them.
type operatorSiteParts struct {
	ccfg      Config
	central   *Peer
	cjs       jetstream.JetStream
	adminJS   func(*Peer) jetstream.JetStream
	members   []Config
	publisher func(*Peer) jetstream.JetStream
}

// newOperatorSite is operatorSite, with its parts.
func newOperatorSite(t *testing.T, ctx context.Context) operatorSiteParts {
	t.Helper()
	st, trustFile := operatorStore(t)
	ccfg := operatorCentralConfig(t, "c1", trustFile)
	central := startPeer(t, ccfg)
	sysCreds, err := st.SystemCreds(0)
	if err != nil {
		t.Fatal(err)
	}
	tn, err := st.CreateTenant("acme", tenancy.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if tn, _, err = st.EnsurePollerKey("acme", "paris"); err != nil {
		t.Fatal(err)
	}
	if err := tenancy.Push(ctx, credsConn(t, central.ClientURL(), sysCreds), tn.JWT); err != nil {
		t.Fatal(err)
	}
	adminCreds, err := st.AdminCreds("acme", 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	adminJS := func(p *Peer) jetstream.JetStream {
		js, err := jetstream.New(credsConn(t, p.ClientURL(), adminCreds))
		if err != nil {
			t.Fatal(err)
		}
		return js
	}
	cjs := adminJS(central)
	if err := bus.WaitJetStream(ctx, cjs); err != nil {
		t.Fatal(err)
	}
	lim := bus.DefaultStreamLimits()
	lim.EventsMaxBytes, lim.MetricsMaxBytes = 256<<20, 64<<20
	centralStreamsAndSite(t, ctx, cjs, lim, "paris")
	b, err := st.IssueSite("acme", "paris")
	if err != nil {
		t.Fatal(err)
	}
	_, pollerCreds, err := st.IssueUser("acme", "p1", tenancy.RolePoller, "paris")
	if err != nil {
		t.Fatal(err)
	}
	members := make([]Config, 3)
	for i := range members {
		cfg := testConfig(t)
		cfg.Site = "paris"
		cfg.SiteTrust = &b.Trust
		cfg.Central = []string{"nats-leaf://" + ccfg.LeafListen}
		cfg.Tenants = []SiteTenant{{Name: "acme", Account: b.Account, AccountJWT: b.AccountJWT, LeafCreds: string(b.LeafCreds), UpkeepCreds: string(b.UpkeepCreds)}}
		members[i] = cfg
	}
	publisher := func(p *Peer) jetstream.JetStream {
		js, err := jetstream.New(credsConn(t, p.ClientURL(), pollerCreds))
		if err != nil {
			t.Fatal(err)
		}
		return js
	}
	return operatorSiteParts{ccfg: ccfg, central: central, cjs: cjs, adminJS: adminJS, members: members, publisher: publisher}
}
