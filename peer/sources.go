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
	// kickLost: a source that had its request for the site's consumer out
	// when the site came within reach sent it while the link was down, and
	// it was lost; it is set again once it still has no answer this long
	// after (time for a request sent as the link came up to be answered).
	kickLost = 300 * time.Millisecond
	// kickGrace: a source whose site's link has just come back, and whose
	// request was not lost, is left this long to resume on its own.
	kickGrace = 3 * time.Second
	// Kicks of one source back off from kickFirst to kickMax while they do
	// not help (a site whose streams are not made yet, say).
	kickFirst = 2 * time.Second
	kickMax   = 30 * time.Second
)

// watchSources is a central peer's watch over the sources of central's
// streams that it leads, until ctx is done.
//
// When a site comes back within reach (the tenant account has interest in
// the site's JetStream API, which the leaf link brings), a source that waits
// on it (JetStream's subscription to the deliver subject of the site's
// consumer, while it backs off) is nudged: it wakes on any message there,
// and asks the site for the backlog at once instead of at the consumer's
// next heartbeat, up to a second later. (The site's keeper, keepAccount,
// sees that the consumer is not stalled on flow control by then.)
//
// A source is set again (bus.KickSources), so that it asks the site from
// the last message central holds, only when it has been silent for
// kickStale, its site answers a request, and JetStream will not resume it
// by itself soon:
//
//   - it had a request out for the site's consumer when the site came
//     within reach, and still has kickLost after: the request went out
//     while the link was down and is lost, and JetStream would wait for it
//     to time out (5 s) first; or
//   - its site has been within reach for kickGrace and it has not resumed:
//     a stall (one was seen after a central peer's SIGKILL and restart,
//     nats-server 2.15.2).
//
// Setting a source again while JetStream resumes it by itself would cancel
// its request and make central scan its stream backwards for the site's last
// message, so the watch leaves it alone then. A site that is cut off is left
// alone, so a long outage costs nothing; a link cut silently looks up until
// its pings fail, so a site is asked before its source is set again.
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
	// When this watch first saw each site reachable, since it last was not,
	// and whether the source then had a request out for the site's
	// consumer: the request was lost in the cut.
	type reach struct {
		since time.Time
		lost  bool
	}
	reached := map[sourceKey]reach{}
	var known []sourceKey // as of the last details
	var lastFull time.Time
	// comingBack reports whether a known site is within reach and was not,
	// or came within reach less than kickGrace ago.
	comingBack := func(now time.Time, acc *server.Account) bool {
		for _, k := range known {
			r, ok := reached[k]
			if k.reachable(acc) && (!ok || now.Sub(r.since) <= kickGrace+sourcesPoll) {
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
		var candidates []sourceKey // to set again if their sites answer
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
					delete(reached, key)
					continue
				}
				waiting := acc.SubscriptionInterest(bus.SourceDeliverSubject(site, sd.Name))
				r, ok := reached[key]
				if !ok {
					r = reach{since: now, lost: !waiting}
					reached[key] = r
					if waiting {
						nudge(nc, key)
					}
				}
				waited := now.Sub(r.since)
				if silent <= kickStale || waited < kickLost || (waited < kickGrace && (!r.lost || waiting)) {
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
				candidates = append(candidates, key)
			}
		}
		// A link cut silently still looks up until its pings fail (up to
		// 20 s): only a site that answers is set again.
		answers := sitesAnswering(nc, candidates)
		for _, key := range candidates {
			if answers[key.site] {
				b := kicks[key]
				b.next = now.Add(b.wait)
				b.wait = min(2*b.wait, kickMax)
				stalled[key.stream] = append(stalled[key.stream], key.site)
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
	return acc.SubscriptionInterest(k.infoSubject())
}

// infoSubject is where the source's site answers for its stream.
func (k sourceKey) infoSubject() string {
	return "$JS." + k.site + ".API.STREAM.INFO." + k.stream
}

// answerWithin bounds how long sitesAnswering waits for a site.
const answerWithin = time.Second

// sitesAnswering asks the JetStream of each source's site, side by side,
// for its stream, and reports which sites answered within answerWithin.
func sitesAnswering(nc *nats.Conn, keys []sourceKey) map[string]bool {
	var mu sync.Mutex
	answered := map[string]bool{}
	var wg sync.WaitGroup
	for _, k := range keys {
		wg.Go(func() {
			_, err := nc.Request(k.infoSubject(), nil, answerWithin)
			mu.Lock()
			defer mu.Unlock()
			answered[k.site] = answered[k.site] || err == nil
		})
	}
	wg.Wait()
	return answered
}

// nudge wakes a source that waits on its site, as soon as the site is back
// within reach: the source wakes on any message to the deliver subject of
// the site's consumer, and would otherwise wait for the consumer's next
// heartbeat (up to a second). Sources ignore a message that is neither
// their consumer's delivery nor its heartbeat, so the nudge is harmless to a
// source already resumed.
func nudge(nc *nats.Conn, k sourceKey) {
	_ = nc.Publish(bus.SourceDeliverSubject(k.site, k.stream), nil)
}
