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
)

// siteStarts is how many fresh starts TestSiteClusterFreshStarts makes:
// MESHMON_SITE_STARTS, or 1 (what CI runs).
func siteStarts(t *testing.T) int {
	v := os.Getenv("MESHMON_SITE_STARTS")
	if v == "" {
		return 1
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("MESHMON_SITE_STARTS=%q: want a whole number of at least 1", v)
	}
	return n
}

// TestSiteClusterFreshStarts starts a central peer and a site of three
// clustered peers from empty data dirs, again and again
// (MESHMON_SITE_STARTS times, once by default: run it with 50 to look for a
// rare failure), and requires of every start that each member takes a
// publish and that central holds every event of the site, each once,
// within a minute.
func TestSiteClusterFreshStarts(t *testing.T) {
	if testing.Short() {
		t.Skip("fresh starts of a three-peer site")
	}
	n := siteStarts(t)
	var ready, arrived []time.Duration
	for i := range n {
		ok := t.Run(fmt.Sprintf("start-%d", i+1), func(t *testing.T) {
			r, a := freshSiteClusterStart(t)
			ready, arrived = append(ready, r), append(arrived, a)
		})
		if !ok {
			break
		}
	}
	t.Logf("%d fresh starts of a three-peer site: streams ready %s after the members were started, central holding the 300 events %s after they were published",
		len(ready), spread(ready), spread(arrived))
}

// freshSiteClusterStart is one start of TestSiteClusterFreshStarts. It
// returns how long the site's members took to make their streams, and how
// long central took to hold what was published.
func freshSiteClusterStart(t *testing.T) (ready, arrived time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
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
	sites := make([]*Peer, 3)
	started := time.Now()
	var wg sync.WaitGroup
	for i := range 3 {
		cfg := siteConfig(t, "paris", join)
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
		publishSite(t, peerJS(t, p), "paris", i*100, 100)
	}
	waitCount(t, cjs, "paris", 300, time.Minute)
	arrived = time.Since(published)
	// Each once: every id published, none twice.
	seen := map[string]int{}
	err = bus.Tail(ctx, cjs, bus.TailOptions{Stream: bus.EventsStream, Subject: "ev.paris.>", StartSeq: 1}, func(m bus.TailMsg) error {
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
