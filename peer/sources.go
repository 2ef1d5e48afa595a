package peer

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/backoff"
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
	// when the site came within reach may have sent it while the link was
	// down, and it was lost; unless the watch saw it out while the site was
	// out of reach (then it is sent again at once), it is sent again once
	// it still has no answer this long after (time for a request sent as
	// the link came up to be answered).
	kickLost = 300 * time.Millisecond
	// kickGrace: a source whose site's link has just come back, and whose
	// request was not lost, is left this long to resume on its own.
	kickGrace = 3 * time.Second
	// Kicks of one source back off from kickFirst to kickMax (doubling,
	// each wait ±20%: internal/backoff) while they do not help (a site
	// whose streams are not made yet, say).
	kickFirst = 2 * time.Second
	kickMax   = 30 * time.Second
	// answerWithin bounds how long the watch waits for a site to answer.
	answerWithin = time.Second
)

// watchSources is a central peer's watch over the sources of central's
// streams that it leads, until ctx is done: observe (sourcesSnapshot),
// decide (sourceWatch, pure), act.
//
// When a site comes back within reach (the tenant account has interest in
// the site's JetStream API, which the leaf link brings), a source that
// waits on it (JetStream's subscription to the deliver subject of the
// site's consumer) is made to ask the site for the backlog at once instead
// of at the consumer's next heartbeat, up to a second later:
//
//   - a source that has missed a heartbeat (sourceMissedBeat) is sent a
//     forged one that names a delivery it did not get (retrySources): one
//     that backs off wakes on it, and one that still has its consumer asks
//     the site again from after the last message central stored, as the
//     consumer's own next heartbeat would make it do;
//   - any other is nudged (an empty message, which wakes a source that
//     backs off and is ignored by one that flows);
//   - a source whose request for the site's consumer the watch saw out
//     while the site was out of reach, and that still has it out, lost it
//     in the cut: the request is sent again at once, with its reply, so
//     the site answers the source (resendSourceRequest). One seen out
//     only once the site is back may have gone out over the new link, and
//     is sent again only if still unanswered kickLost later: sent twice,
//     it would reset the site's consumer twice under the source.
//
// A site seen out of reach at any poll (every sourcesPoll) counts as back
// when it is seen within reach again, however soon: a site dials again a
// quarter of a second after its link drops. (The site's keeper,
// keepAccount, sees that the consumer is not stalled on flow control by
// then.)
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
//
// Without tenants the watch acts in the peer's one account over its
// in-process connection. In operator mode it watches every tenant account
// in which it leads a stream that sources sites, and acts in each over a
// connection of its own (centralSigner), made when it first has something
// to do there.
func (p *Peer) watchSources(ctx context.Context) {
	var signer *centralSigner
	if p.cfg.operatorMode() {
		var err error
		if signer, err = p.centralSigner(); err != nil {
			p.log.Error("peer source watch", "err", err)
			return
		}
	}
	// What central held before now it recovered from its store; the tail
	// check (tail.go) compares it with what comes after.
	began := p.now()
	accounts := map[string]*watchedAccount{}
	defer func() {
		for _, a := range accounts {
			a.close()
		}
	}()
	var names []string
	var listed time.Time
	listEvery := sourcesFull
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
		now := p.now()
		switch {
		case signer == nil:
			names = []string{p.cfg.Tenant}
		case now.Sub(listed) >= listEvery:
			listed = now
			info, took, err := p.streams.get(srv, sourcesFull)
			if err != nil {
				continue
			}
			listEvery = paceAfter(sourcesFull, took)
			list := sourcingAccounts(info, srv.Name())
			names = list
			for name, a := range accounts {
				if !slices.Contains(names, name) {
					a.close()
					delete(accounts, name)
				}
			}
		}
		for _, name := range names {
			a := accounts[name]
			if a == nil {
				a = &watchedAccount{name: name, w: newSourceWatch(), pw: newProgressWatch(), tw: newTailWatch(began)}
				if signer == nil {
					a.dial = func() (*nats.Conn, rawAuth, error) {
						nc, err := p.InProcessConn(nats.Name("meshmon-peer-sources"))
						return nc, p.internalRawAuth(), err
					}
				} else {
					a.dial = func() (*nats.Conn, rawAuth, error) { return signer.connAuth(srv, name, "meshmon-peer-sources") }
				}
				accounts[name] = a
			}
			p.watchAccount(ctx, srv, a, now)
		}
	}
}

// watchedAccount is the watch over the sources of one account.
type watchedAccount struct {
	name string
	w    *sourceWatch
	pw   *progressWatch
	tw   *tailWatch
	dial func() (*nats.Conn, rawAuth, error)
	nc   *nats.Conn // made on the first action, again once closed
	js   jetstream.JetStream
	auth rawAuth // nc's user, for the raw connections of retrySources
}

// conn returns the account's connection, made again if it closed.
func (a *watchedAccount) conn() (*nats.Conn, jetstream.JetStream, error) {
	if a.nc != nil && !a.nc.IsClosed() {
		return a.nc, a.js, nil
	}
	a.close()
	nc, auth, err := a.dial()
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	a.nc, a.js, a.auth = nc, js, auth
	return nc, js, nil
}

func (a *watchedAccount) close() {
	if a.nc != nil {
		a.nc.Close()
		a.nc, a.js = nil, nil
	}
}

// watchAccount is one look at the sources of one account (see
// watchSources): observe, decide, act.
func (p *Peer) watchAccount(ctx context.Context, srv *server.Server, a *watchedAccount, now time.Time) {
	acc, err := srv.LookupAccount(a.name)
	if err != nil {
		return
	}
	// The streams' details (JSZ, which takes each stream's lock) are read
	// every sourcesFull; every sourcesPoll only while a site has come
	// within reach in the last kickGrace, when a lost request is worth
	// noticing at once.
	if !a.w.due(now, observeReach(acc, a.w.known)) {
		return
	}
	snap, err := observeSourcesSnapshot(srv, acc, a.w.back)
	if err != nil {
		return
	}
	plan := a.w.decide(snap, now)
	probe := a.pw.toProbe(snap, plan.ask, now)
	if len(plan.retry) == 0 && len(plan.nudge) == 0 && len(plan.resend) == 0 && len(plan.ask) == 0 && len(probe) == 0 {
		return
	}
	nc, js, err := a.conn()
	if err != nil {
		if ctx.Err() == nil {
			p.log.Warn("peer source watch: in-process connection", "account", a.name, "err", err)
		}
		return
	}
	if len(plan.retry) > 0 {
		p.log.Debug("peer source watch: sites back after their sources missed a heartbeat; making the sources ask them again now", "account", a.name, "sources", plan.retry)
		if err := retrySources(srv, a.auth, plan.retry); err != nil {
			p.log.Warn("peer source watch: the sites are back, but their sources could not be made to ask them now; they will at their consumers' next heartbeat", "account", a.name, "sources", plan.retry, "err", err)
		}
	}
	for _, k := range plan.nudge {
		p.log.Debug("peer source watch: the site is back; nudging its source", "account", a.name, "stream", k.stream, "site", k.site)
		nudgeSource(nc, k)
	}
	for _, r := range plan.resend {
		p.log.Debug("peer source watch: the site is back and its source's request went out in the cut; sending the request again", "account", a.name, "stream", r.key.stream, "site", r.key.site)
		if err := resendSourceRequest(nc, r.key, r.reply); err != nil {
			p.log.Warn("peer source watch: send a source's request again", "account", a.name, "stream", r.key.stream, "site", r.key.site, "err", err)
		}
	}
	// A link cut silently still looks up until its pings fail (up to 20 s):
	// only a site that answers is set again. EVENTS and METRICS are set
	// again side by side: each takes two replicated stream updates.
	var wg sync.WaitGroup
	if len(plan.ask) > 0 {
		for stream, sites := range a.w.kick(plan.ask, sitesAnswering(nc, plan.ask), now) {
			wg.Go(func() { p.kickSources(ctx, js, a.name, stream, sites, kickSilent) })
		}
	}
	if len(probe) > 0 {
		answers := sitesProgress(nc, probe)
		stuck := a.pw.judge(answers, now)
		for _, k := range stuck {
			pr := answers[k]
			p.log.Warn("source made no progress: the site's consumer holds messages for central and delivers none, or central acknowledges none; setting the source again",
				"account", a.name, "stream", k.stream, "site", k.site, "delivered", pr.delivered, "acknowledged", pr.acked, "held", pr.held, "unmoved_for_more_than", kickStale)
		}
		for stream, sites := range byStream(stuck) {
			wg.Go(func() { p.kickSources(ctx, js, a.name, stream, sites, kickStuck) })
		}
		p.mendTails(ctx, nc, js, a.name, a.tw, answers)
	}
	wg.Wait()
}

// Why a source is set again, as logged.
const (
	kickSilent = "the site is reachable but its source stayed silent"
	kickStuck  = "the site holds messages for central but its source consumer made no progress"
)

// byStream groups keys by stream, the sites of each in the keys' order.
func byStream(keys []sourceKey) map[string][]string {
	out := map[string][]string{}
	for _, k := range keys {
		out[k.stream] = append(out[k.stream], k.site)
	}
	return out
}

// kickSources sets the sources of stream from sites again (see
// watchSources).
func (p *Peer) kickSources(ctx context.Context, js jetstream.JetStream, account, stream string, sites []string, why string) {
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := bus.KickSources(actx, js, stream, sites)
	switch {
	case err != nil && ctx.Err() == nil:
		p.log.Warn("set stalled sources again", "account", account, "stream", stream, "sites", sites, "err", err)
	case err == nil:
		p.log.Info("set sources again: "+why, "account", account, "stream", stream, "sites", sites, "for_more_than", kickStale)
	}
}

// sourceKey names one source of one of central's streams.
type sourceKey struct{ stream, site string }

// sourceState is what the watch observes of one source.
type sourceState struct {
	key sourceKey
	// active is how long ago the source last heard from its site; negative
	// when it has not since it was set.
	active time.Duration
	// reachable: the site's link is up (or looks up).
	reachable bool
	// waiting: the source waits on the site, with no request out for the
	// site's consumer.
	waiting bool
	// pending: the reply of the request for the consumer the source has
	// out, when it has one (looked up when a source does not wait on its
	// site, or a site is back: observeSourcesSnapshot). For a source whose
	// site is out of reach, it was looked up before the site was seen so:
	// the request was out while the link was down, and no answer to it can
	// come.
	pending string
}

// sourcesSnapshot is what the watch observes in one look: the sources of
// the streams this peer leads.
type sourcesSnapshot []sourceState

// observeSourcesSnapshot looks at the sources of the streams this server
// leads in acc. It looks for the sources' requests out (pending) when a
// source in reach seems to have one, or its site is back (back): a
// request sent in the cut may still be out, and is looked for rather
// than taken from the interest alone.
func observeSourcesSnapshot(srv *server.Server, acc *server.Account, back func(sourceKey) bool) (sourcesSnapshot, error) {
	srcs, err := observeSources(srv, acc.Name)
	if err != nil {
		return nil, err
	}
	snap := make(sourcesSnapshot, 0, len(srcs))
	// asking: a source has a request out (it does not wait on its site),
	// or its site is back.
	asking := false
	for _, s := range srcs {
		st := sourceState{
			key:       s.key,
			active:    s.active,
			reachable: siteReachable(acc, s.key.site, s.key.stream),
			waiting:   sourceWaiting(acc, s.key.site, s.key.stream),
		}
		asking = asking || !st.waiting || (st.reachable && back(st.key))
		snap = append(snap, st)
	}
	if asking {
		pending, err := pendingSourceRequests(srv, acc.Name)
		if err != nil {
			return nil, err
		}
		for i := range snap {
			if snap[i].pending = pending[snap[i].key]; snap[i].pending != "" {
				snap[i].waiting = false
			}
			// A site out of reach is looked at again after its source's
			// request: one still out of reach had it out while its link
			// was down (sourceState.pending); one back since has a request
			// that may have gone out over the new link.
			if !snap[i].reachable {
				snap[i].reachable = siteReachable(acc, snap[i].key.site, snap[i].key.stream)
			}
		}
	}
	return snap, nil
}

// observeReach reports which of keys' sites are within reach.
func observeReach(acc *server.Account, keys []sourceKey) map[sourceKey]bool {
	out := make(map[sourceKey]bool, len(keys))
	for _, k := range keys {
		out[k] = siteReachable(acc, k.site, k.stream)
	}
	return out
}

// sitesAnswering asks the JetStream of each source's site, side by side,
// for its stream, and reports which sites answered within answerWithin.
func sitesAnswering(nc *nats.Conn, keys []sourceKey) map[string]bool {
	answered := map[string]bool{}
	for k := range askSites(keys, func(k sourceKey) (struct{}, bool) {
		return struct{}{}, siteAnswers(nc, k, siteReplyInbox(k.site), answerWithin)
	}) {
		answered[k.site] = true
	}
	return answered
}

// askSites runs ask for each of keys side by side and returns the answers
// of those for which it reports one.
func askSites[T any](keys []sourceKey, ask func(sourceKey) (T, bool)) map[sourceKey]T {
	var mu sync.Mutex
	out := map[sourceKey]T{}
	var wg sync.WaitGroup
	for _, k := range keys {
		wg.Go(func() {
			v, ok := ask(k)
			if !ok {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			out[k] = v
		})
	}
	wg.Wait()
	return out
}

// siteReplyInbox is a new subject for a site's answer. A site's link
// carries to central only the subjects its leaf user may publish there
// (tenancy.RoleLeaf): its source consumers' deliveries among them, under
// meshmon.source.<site>, where nothing else subscribes past the deliver
// subjects themselves.
func siteReplyInbox(site string) string {
	return "meshmon.source." + site + ".answer." + nuid.Next()
}

// askSite sends a request with body on subject to a site over its link
// and returns the answer, which comes to inbox (siteReplyInbox), within
// within.
func askSite(nc *nats.Conn, subject, inbox string, body []byte, within time.Duration) (*nats.Msg, error) {
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	// The subscription reaches the site's link before the request.
	if err := nc.FlushTimeout(within); err != nil {
		return nil, err
	}
	if err := nc.PublishRequest(subject, inbox, body); err != nil {
		return nil, err
	}
	return sub.NextMsg(within)
}

// sourceWatch is what the watch decides with: its memory of what it saw
// before. Its methods do no I/O and read no clock: each takes what was
// observed and the time. One goroutine uses it.
type sourceWatch struct {
	// known: the sources of the last snapshot.
	known []sourceKey
	// lastFull: when the last snapshot was taken.
	lastFull time.Time
	// unheard: a source not heard from since it was set reports no silence
	// of its own: it counts from when the watch first saw it so.
	unheard map[sourceKey]time.Time
	// reached: when the watch first saw each site reachable, since it last
	// was not, and whether the source then had a request out for the site's
	// consumer (lost: the request was lost in the cut).
	reached map[sourceKey]reach
	// outInCut: the request each source had out at the last look while its
	// site was out of reach; still out when the site is back, it was lost.
	outInCut map[sourceKey]string
	// kicks: the back-off of each source that is a candidate to be set
	// again.
	kicks map[sourceKey]*kickBackoff
}

type reach struct {
	since time.Time
	lost  bool
	// pending: the reply of the request that was out when the site came
	// back, to be sent again (resend) if it still has no answer kickLost
	// after.
	pending string
}

// kickBackoff is when a source may be set again next, and the back-off
// (internal/backoff: doubling, jittered) that paces it.
type kickBackoff struct {
	next time.Time
	wait *backoff.Backoff
}

func newSourceWatch() *sourceWatch {
	return &sourceWatch{unheard: map[sourceKey]time.Time{}, reached: map[sourceKey]reach{}, outInCut: map[sourceKey]string{}, kicks: map[sourceKey]*kickBackoff{}}
}

// back reports whether k's site is back: the watch has not seen it within
// reach since it last saw it out of reach (or never did).
func (w *sourceWatch) back(k sourceKey) bool {
	_, ok := w.reached[k]
	return !ok
}

// due reports whether the watch takes a snapshot now: every sourcesFull,
// and every time while a known site is within reach (reachable) and was
// not at the last snapshot, or came within reach less than kickGrace ago.
// A site seen out of reach is forgotten as reached, whether a snapshot is
// taken or not: a link that drops and is made again between two snapshots
// (a site dials again within a quarter of a second) is a return all the
// same.
func (w *sourceWatch) due(now time.Time, reachable map[sourceKey]bool) bool {
	for k, ok := range reachable {
		if !ok {
			delete(w.reached, k)
		}
	}
	if now.Sub(w.lastFull) >= sourcesFull {
		return true
	}
	for _, k := range w.known {
		r, ok := w.reached[k]
		if reachable[k] && (!ok || now.Sub(r.since) <= kickGrace+sourcesPoll) {
			return true
		}
	}
	return false
}

// sourcesPlan is what the watch does after a snapshot: make sources whose
// site is just back retry at once (those that missed a heartbeat) or nudge
// them, send again the requests sources lost in a cut (resend), and ask the
// sites of the sources to be set again (kick) whether they answer.
type sourcesPlan struct {
	retry  []sourceKey
	nudge  []sourceKey
	resend []sourceRequest
	ask    []sourceKey
}

// sourceRequest is the request for its consumer a source has out: its
// reply subject.
type sourceRequest struct {
	key   sourceKey
	reply string
}

// decide takes the snapshot taken at now (see watchSources for the rules).
func (w *sourceWatch) decide(snap sourcesSnapshot, now time.Time) sourcesPlan {
	var plan sourcesPlan
	w.lastFull = now
	w.known = w.known[:0]
	seen := map[sourceKey]bool{} // candidates, answering or not
	for _, s := range snap {
		key := s.key
		w.known = append(w.known, key)
		silent := s.active
		if silent < 0 {
			if _, ok := w.unheard[key]; !ok {
				w.unheard[key] = now
			}
			silent = now.Sub(w.unheard[key])
		} else {
			delete(w.unheard, key)
		}
		if !s.reachable {
			delete(w.reached, key)
			if s.pending != "" {
				w.outInCut[key] = s.pending
			} else {
				delete(w.outInCut, key)
			}
			continue
		}
		r, ok := w.reached[key]
		if !ok {
			r = reach{since: now, lost: !s.waiting, pending: s.pending}
			switch {
			case s.pending != "" && s.pending == w.outInCut[key]:
				// Out while the site was out of reach: lost, and sent
				// again at once (see kickLost for a request not seen so).
				plan.resend = append(plan.resend, sourceRequest{key: key, reply: s.pending})
				r.lost, r.pending = false, ""
			case s.waiting && silent > sourceMissedBeat:
				plan.retry = append(plan.retry, key)
			case s.waiting:
				plan.nudge = append(plan.nudge, key)
			}
			w.reached[key] = r
		}
		delete(w.outInCut, key)
		waited := now.Sub(r.since)
		if r.lost && r.pending != "" && waited >= kickLost {
			if s.pending == r.pending {
				// Still no answer: the request was lost in the cut. Sent
				// again with its reply, it is answered to the source in
				// one round trip, where setting the source again takes
				// two stream updates and the source's own pause before
				// it asks.
				plan.resend = append(plan.resend, sourceRequest{key: key, reply: r.pending})
				r.lost = false
			}
			r.pending = ""
			w.reached[key] = r
			continue
		}
		if silent <= kickStale || waited < kickLost || (waited < kickGrace && (!r.lost || s.waiting)) {
			continue
		}
		seen[key] = true
		b := w.kicks[key]
		if b == nil {
			b = &kickBackoff{wait: backoff.New(kickFirst, kickMax)}
			w.kicks[key] = b
		}
		if now.Before(b.next) {
			continue
		}
		plan.ask = append(plan.ask, key)
	}
	for key := range w.kicks {
		if !seen[key] {
			delete(w.kicks, key) // flowing again, or cut off: start afresh
		}
	}
	// A source this peer no longer leads (or that was removed) is
	// forgotten: led again (or added again), it is new to the watch.
	for key := range w.reached {
		if !slices.Contains(w.known, key) {
			delete(w.reached, key)
		}
	}
	for key := range w.unheard {
		if !slices.Contains(w.known, key) {
			delete(w.unheard, key)
		}
	}
	for key := range w.outInCut {
		if !slices.Contains(w.known, key) {
			delete(w.outInCut, key)
		}
	}
	return plan
}

// kick takes which sites answered (answered, by site) of the sources
// asked about at now, and returns the sources to set again, by stream, the
// sites of each sorted; each of them backs off.
func (w *sourceWatch) kick(asked []sourceKey, answered map[string]bool, now time.Time) map[string][]string {
	out := map[string][]string{}
	for _, key := range asked {
		if !answered[key.site] {
			continue
		}
		if b := w.kicks[key]; b != nil {
			b.next = now.Add(b.wait.Next())
		}
		out[key.stream] = append(out[key.stream], key.site)
	}
	for stream := range maps.Keys(out) {
		slices.Sort(out[stream])
	}
	return out
}
