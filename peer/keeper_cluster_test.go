package peer

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/internal/wan"
)

// TestSiteClusterMemberCut: in a site of three clustered peers, one member
// loses its link to central while the others keep theirs, and central,
// setting its sources again meanwhile, still gets every event, without
// waiting for the link to return: when the member led the consumer central
// sources EVENTS through, it hands the consumer to a linked member.
func TestSiteClusterMemberCut(t *testing.T) {
	t.Parallel()
	for _, member := range []string{"follower", "leader"} {
		t.Run(member, func(t *testing.T) { testSiteClusterMemberCut(t, member == "leader") })
	}
}

func testSiteClusterMemberCut(t *testing.T, leader bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	central := startPeer(t, centralConfig(t, "c1"))
	cjs := peerJS(t, central)
	if err := bus.AddSite(ctx, cjs, "paris", time.Now()); err != nil {
		t.Fatal(err)
	}
	join, err := bus.Join(ctx, cjs)
	if err != nil {
		t.Fatal(err)
	}
	routes := []string{freeAddr(t), freeAddr(t), freeAddr(t)}
	proxies := make([]*wan.Proxy, 3)
	sites := make([]*Peer, 3)
	var wg sync.WaitGroup
	for i := range 3 {
		px, err := wan.NewProxy(strings.TrimPrefix(join.Central[0], "nats-leaf://"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(px.Close)
		proxies[i] = px
		via := join
		via.Central = []string{"nats-leaf://" + px.Addr()}
		cfg := siteConfig(t, "paris", via)
		cfg.Name = fmt.Sprintf("paris-%d", i+1)
		joinCluster(&cfg, routes, i)
		wg.Go(func() { sites[i] = startPeer(t, cfg) })
	}
	wg.Wait()
	if t.Failed() { // a start failed in its goroutine
		t.FailNow()
	}
	waitStreamsReady(t, sites...)
	sjs := peerJS(t, sites[0])
	publishSite(t, sjs, "paris", 0, 100)
	waitCount(t, cjs, "paris", 100, 30*time.Second)

	// Cut a member that leads neither source consumer, or the one that
	// leads EVENTS'.
	cut := -1
	for i, p := range sites {
		acc, err := p.Server().LookupAccount(p.cfg.Tenant)
		if err != nil {
			t.Fatal(err)
		}
		ev := acc.JetStreamIsConsumerLeader(bus.EventsStream, bus.SourceConsumer(bus.EventsStream))
		mx := acc.JetStreamIsConsumerLeader(bus.MetricsStream, bus.SourceConsumer(bus.MetricsStream))
		if (leader && ev) || (!leader && !ev && !mx) {
			cut = i
			break
		}
	}
	if cut < 0 {
		t.Fatal("no member to cut")
	}
	proxies[cut].Cut(true)
	cutAt := time.Now()
	eventually.NoError(t, 30*time.Second, "the cut member to see its link down", func() error {
		acc, err := sites[cut].Server().LookupAccount(sites[cut].cfg.Tenant)
		if err != nil {
			return err
		}
		if acc.SubscriptionInterest("$JS." + bus.HubDomain + ".API.INFO") {
			return fmt.Errorf("%s still sees central", sites[cut].cfg.Name)
		}
		return nil
	})
	// Batches, each followed by central setting its sources again, as it
	// does after a gap or a stall.
	for b := range 5 {
		publishSite(t, sjs, "paris", 100+b*200, 200)
		if err := bus.KickSources(ctx, cjs, bus.EventsStream, []string{"paris"}); err != nil {
			t.Fatal(err)
		}
	}
	waitCount(t, cjs, "paris", 1100, 30*time.Second)
	t.Logf("central had the 1,000 events published during the cut %s after it began", time.Since(cutAt).Round(time.Millisecond))
	proxies[cut].Cut(false)
	publishSite(t, sjs, "paris", 1100, 100)
	waitCount(t, cjs, "paris", 1200, 30*time.Second)
}
