package peer

import (
	"cmp"
	"encoding/json"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/backoff"
)

// A stall that silence does not show. The source watch (sources.go) sets
// a source again when it goes silent; but a source whose site's consumer
// keeps sending its heartbeat every second, and no messages, never looks
// silent: JetStream's own health check (every 10 s) and the watch both see
// it active. That happens when the consumer waits on something central
// never sends (a flow-control answer lost on the way, or a consumer
// paused at the site), and central then holds back the site's events for
// as long as it lasts.
//
// So every progressEvery the watch also asks each reachable site how its
// source consumers stand (consumer info over the link, answered to the
// inbox the site's link carries back): what they delivered last, what
// central acknowledged last, and what they still hold for central. A
// source whose consumer holds messages for central and whose delivered
// and acknowledged positions have not moved for kickStale is set again,
// like a silent one.
const progressEvery = 5 * time.Second

// siteProgress is how a source's consumer at the site stands.
type siteProgress struct {
	delivered, acked uint64 // stream sequences: last delivered, ack floor
	held             uint64 // messages not delivered, or not acknowledged
}

// progressWatch remembers, per source, since when its consumer's
// positions have not moved while it held messages for central. Its methods
// do no I/O and read no clock.
type progressWatch struct {
	last  time.Time // when the sites were last asked
	marks map[sourceKey]progressMark
}

type progressMark struct {
	delivered, acked uint64
	since            time.Time
	// After a verdict the source is judged again only once next has
	// passed, backing off (stuckFirst doubling to stuckMax) while it stays
	// stuck: a consumer paused at the site on purpose is set again now
	// and then, not every look.
	next time.Time
	wait *backoff.Backoff
}

// Set-agains of a source that stays stuck back off from stuckFirst to
// stuckMax.
const (
	stuckFirst = kickStale
	stuckMax   = 5 * time.Minute
)

func newProgressWatch() *progressWatch {
	return &progressWatch{marks: map[sourceKey]progressMark{}}
}

// due reports whether the sites are to be asked at now, and if so notes
// that they were.
func (w *progressWatch) due(now time.Time) bool {
	if now.Sub(w.last) < progressEvery {
		return false
	}
	w.last = now
	return true
}

// judge takes what the sites answered at now (by source; a source whose
// site did not answer is absent) and returns the sources that made no
// progress for kickStale while their consumer held messages for central.
// One returned is judged again only after a back-off (stuckFirst,
// doubling to stuckMax) while its positions stay where they were.
func (w *progressWatch) judge(answers map[sourceKey]siteProgress, now time.Time) []sourceKey {
	var stalled []sourceKey
	for key := range w.marks {
		if _, ok := answers[key]; !ok {
			delete(w.marks, key) // no answer: nothing to judge it by
		}
	}
	for key, p := range answers {
		m, ok := w.marks[key]
		switch {
		case p.held == 0:
			delete(w.marks, key)
		case !ok || m.delivered != p.delivered || m.acked != p.acked:
			w.marks[key] = progressMark{delivered: p.delivered, acked: p.acked, since: now}
		case now.Sub(m.since) >= kickStale && !now.Before(m.next):
			stalled = append(stalled, key)
			if m.wait == nil {
				m.wait = backoff.New(stuckFirst, stuckMax)
			}
			m.next = now.Add(m.wait.Next())
			w.marks[key] = m
		}
	}
	sortKeys(stalled)
	return stalled
}

// sitesProgress asks the site of each source, side by side, how its
// consumer stands; a site that does not answer within answerWithin is left
// out.
func sitesProgress(nc *nats.Conn, keys []sourceKey) map[sourceKey]siteProgress {
	return askSites(keys, func(k sourceKey) (siteProgress, bool) {
		return askProgress(nc, k, bus.SourceConsumer(k.stream), siteReplyInbox(k.site), answerWithin)
	})
}

// askProgress asks the site's JetStream for k's consumer called consumer
// (bus.SourceConsumer, bus.RefetchConsumer) and reads how it stands. The
// answer comes to inbox, a subject the site's link carries back to central.
func askProgress(nc *nats.Conn, k sourceKey, consumer, inbox string, within time.Duration) (siteProgress, bool) {
	m, err := askSite(nc, "$JS."+k.site+".API.CONSUMER.INFO."+k.stream+"."+consumer, inbox, nil, within)
	if err != nil {
		return siteProgress{}, false
	}
	var info struct {
		Error     *struct{} `json:"error"`
		Delivered struct {
			Stream uint64 `json:"stream_seq"`
		} `json:"delivered"`
		AckFloor struct {
			Stream uint64 `json:"stream_seq"`
		} `json:"ack_floor"`
		NumAckPending uint64 `json:"num_ack_pending"`
		NumPending    uint64 `json:"num_pending"`
	}
	if json.Unmarshal(m.Data, &info) != nil || info.Error != nil {
		return siteProgress{}, false
	}
	return siteProgress{delivered: info.Delivered.Stream, acked: info.AckFloor.Stream, held: info.NumPending + info.NumAckPending}, true
}

// sortKeys sorts source keys by stream, then site.
func sortKeys(keys []sourceKey) {
	slices.SortFunc(keys, func(a, b sourceKey) int {
		return cmp.Or(cmp.Compare(a.stream, b.stream), cmp.Compare(a.site, b.site))
	})
}

// toProbe returns the sources of snap whose sites the progress watch asks
// at now: every reachable one not already asked about (ask), when due.
func (w *progressWatch) toProbe(snap sourcesSnapshot, ask []sourceKey, now time.Time) []sourceKey {
	if !w.due(now) {
		return nil
	}
	var out []sourceKey
	for _, s := range snap {
		if s.reachable && !slices.Contains(ask, s.key) {
			out = append(out, s.key)
		}
	}
	return out
}
