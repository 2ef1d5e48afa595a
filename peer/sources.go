package peer

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/bus"
)

// How a central peer looks after the sources of central's streams (see
// watchSources).
const (
	sourcesPoll = 100 * time.Millisecond
	sourcesFull = time.Second
	// kickStale: a source's consumer at the site sends a heartbeat every
	// second, so a source silent this long is behind; whether it is set
	// again depends on why (see watchSources).
	kickStale = 6 * time.Second
	// kickLost: a source that has sent its request for the site's consumer
	// and still has no answer this long after the site became reachable
	// sent it while the link was down, and it was lost.
	kickLost = 300 * time.Millisecond
	// kickGrace: a site whose link has just come back, and whose source is
	// waiting on it, is left this long to resume on its own.
	kickGrace = 3 * time.Second
	// Kicks of one source back off from kickFirst to kickMax while they do
	// not help (a site whose streams are not made yet, say).
	kickFirst = 2 * time.Second
	kickMax   = 30 * time.Second
)

// watchSources is a central peer's watch over the sources of central's
// streams that it leads, until ctx is done. A source is set again
// (bus.KickSources), so that it asks the site from the last message central
// holds, only when its site is reachable (the tenant account has interest
// in the site's JetStream API, which the leaf link brings), it has been
// silent for kickStale, and JetStream will not resume it by itself soon:
//
//   - JetStream's source waits on its site through a subscription to the
//     deliver subject of the site's consumer; the consumer's next heartbeat
//     (every second) wakes it, and it asks for the backlog at once. Setting
//     the source again then would only cancel that request and make central
//     scan its stream backwards, so the watch waits kickGrace first. (A
//     source was seen to stay stalled after a central peer's SIGKILL and
//     restart, nats-server 2.15.2; it is set again after kickGrace.)
//   - A source with no such subscription has a request out for the site's
//     consumer. If the site has been reachable for kickLost, that request
//     went out while the link was down and is lost; JetStream would wait
//     for it to time out (5 s) and then for a heartbeat, so it is set again
//     at once.
//
// A site that is cut off is left alone, so a long outage costs nothing.
func (p *Peer) watchSources(ctx context.Context) {
	nc, err := p.InProcessConn(nats.Name("meshmon-peer-sources"))
	if err != nil {
		p.log.Error("peer source watch: in-process connection", "err", err)
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		p.log.Error("peer source watch", "err", err)
		return
	}
	type backoff struct {
		next time.Time
		wait time.Duration
	}
	kicks := map[sourceKey]*backoff{}
	// A source not heard from since it was set reports no silence of its
	// own: it counts from when this watch first saw it so.
	unheard := map[sourceKey]time.Time{}
	// When this watch first saw each site reachable, since it last was not.
	reachableSince := map[sourceKey]time.Time{}
	var known []sourceKey // as of the last details
	var lastFull time.Time
	// comingBack reports whether a known site is within reach and was not,
	// or came within reach less than kickGrace ago.
	comingBack := func(now time.Time, acc *server.Account) bool {
		for _, k := range known {
			since, ok := reachableSince[k]
			if k.reachable(acc) && (!ok || now.Sub(since) <= kickGrace+sourcesPoll) {
				return true
			}
		}
		return false
	}
	t := time.NewTicker(sourcesPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		srv := p.Server()
		if srv == nil {
			continue
		}
		acc, err := srv.LookupAccount(p.cfg.Tenant)
		if err != nil {
			continue
		}
		now := time.Now()
		// The streams' details (JSZ, which takes each stream's lock) are
		// read every sourcesFull; every sourcesPoll only while a site has
		// come within reach in the last kickGrace, when a lost request is
		// worth noticing at once.
		if now.Sub(lastFull) < sourcesFull && !comingBack(now, acc) {
			continue
		}
		detail, err := srv.JszAccount(&server.JSzOptions{Account: p.cfg.Tenant, Streams: true, StreamLeaderOnly: true})
		if err != nil {
			continue
		}
		lastFull = now
		known = known[:0]
		stalled := map[string][]string{} // stream -> sites
		seen := map[sourceKey]bool{}
		for _, sd := range detail.Streams {
			if sd.Name != bus.EventsStream && sd.Name != bus.MetricsStream {
				continue
			}
			for _, src := range sd.Sources {
				if src.External == nil {
					continue
				}
				site := bus.SourceSite(src.External.ApiPrefix)
				key := sourceKey{stream: sd.Name, site: site}
				known = append(known, key)
				silent := src.Active
				if silent < 0 {
					if _, ok := unheard[key]; !ok {
						unheard[key] = now
					}
					silent = now.Sub(unheard[key])
				} else {
					delete(unheard, key)
				}
				if !key.reachable(acc) {
					delete(reachableSince, key)
					continue
				}
				if _, ok := reachableSince[key]; !ok {
					reachableSince[key] = now
				}
				waited := now.Sub(reachableSince[key])
				waiting := acc.SubscriptionInterest(bus.SourceDeliverSubject(site, sd.Name))
				if silent <= kickStale || (waiting && waited < kickGrace) || (!waiting && waited < kickLost) {
					continue
				}
				seen[key] = true
				b := kicks[key]
				if b == nil {
					b = &backoff{wait: kickFirst}
					kicks[key] = b
				}
				if now.Before(b.next) {
					continue
				}
				b.next = now.Add(b.wait)
				b.wait = min(2*b.wait, kickMax)
				stalled[sd.Name] = append(stalled[sd.Name], site)
			}
		}
		for key := range kicks {
			if !seen[key] {
				delete(kicks, key) // flowing again, or cut off: start afresh
			}
		}
		// EVENTS and METRICS are set again side by side: each takes two
		// replicated stream updates.
		var wg sync.WaitGroup
		for stream, sites := range stalled {
			wg.Go(func() {
				actx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				err := bus.KickSources(actx, js, stream, sites)
				switch {
				case err != nil && ctx.Err() == nil:
					p.log.Warn("set stalled sources again", "stream", stream, "sites", sites, "err", err)
				case err == nil:
					p.log.Info("set sources again: the site is reachable but its source stayed silent", "stream", stream, "sites", sites, "silent_for_more_than", kickStale)
				}
			})
		}
		wg.Wait()
	}
}

// sourceKey names one source of one of central's streams.
type sourceKey struct{ stream, site string }

// reachable reports whether the source's site is within reach: the tenant
// account has interest in the site's JetStream API, which its leaf link
// brings.
func (k sourceKey) reachable(acc *server.Account) bool {
	return acc.SubscriptionInterest("$JS." + k.site + ".API.STREAM.INFO." + k.stream)
}
