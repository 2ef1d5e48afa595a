package peer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/bus"
)

// A tail central lost. Central acknowledges what its source stored
// (flow control is the site's consumer's only ack), and nats-server 2.15.3
// resumes a durable source from the consumer's ack floor: its reset request
// names no sequence (stream.go, trySetupSourceConsumer). So if central comes
// back without the last events it had acknowledged (its store's tail lost
// to a power cut without fsync, a truncated file, an older copy of its
// data), its source resumes after them, and central never holds them,
// while the site still does. Nor would a reset of the site's consumer to
// the first of them bring them: a source takes nothing at or below the
// newest sequence it knows of its site (processInboundSourceMsg), which
// survives the restart, and once it stored newer events of the site, is
// past them anyway.
//
// The source watch therefore checks each source, at its looks at the
// site's consumer (every progressEvery) after the watch began (the peer's
// start), until it can tell: the last event of the site central held
// before then, and the first it stored since (or, if none yet, the
// consumer's ack floor), must be consecutive in the site's stream. If they
// are not, and central does not hold the first event missing
// (confirmGap), the watch fetches the missing events again through the site's
// second consumer (bus.RefetchConsumer): it resets that consumer to the
// first missing event and has central source the site through it
// (bus.SourceThrough), a source of its own to nats-server, which has
// stored nothing through it past the gap. Once the site says the consumer
// has delivered, and central acknowledged, the gap and what central held
// of the site when the refetch began, central sources the site through its
// own consumer again, which resumes where it stood. What the refetch
// delivers that central holds already it drops as duplicates (Nats-Msg-Id,
// stored within the duplicate window: since the peer's start), so each
// missing event is stored once, after the ones central stored meanwhile.

// tailWatch remembers which sources have had their tail checked since the
// watch began. Its methods do no I/O.
type tailWatch struct {
	since time.Time
	done  map[sourceKey]bool
}

func newTailWatch(since time.Time) *tailWatch {
	return &tailWatch{since: since, done: map[sourceKey]bool{}}
}

// toCheck returns the sources of answers not checked yet, in order.
func (w *tailWatch) toCheck(answers map[sourceKey]siteProgress) []sourceKey {
	var out []sourceKey
	for k := range answers {
		if !w.done[k] {
			out = append(out, k)
		}
	}
	sortKeys(out)
	return out
}

// settle notes that k's tail was checked.
func (w *tailWatch) settle(k sourceKey) { w.done[k] = true }

// tailGap is what checkTail found of one source.
type tailGap struct {
	decided bool // false: look again at the next answer
	// from and to are the first and last events of the site's stream
	// central lost; from is 0 when none.
	from, to uint64
}

// checkTail finds whether central lost the tail of k's events it held
// before since (see above); acked is the site consumer's ack floor, read
// before this call.
func checkTail(nc *nats.Conn, k sourceKey, acked uint64, since time.Time) (tailGap, error) {
	subj := sourceSubjects(k)
	after, err := msgGet(nc, k.stream, bus.MsgGetRequest{NextFor: subj, StartTime: &since})
	if err != nil {
		return tailGap{}, err
	}
	if after == nil {
		last, err := msgGet(nc, k.stream, bus.MsgGetRequest{LastFor: subj})
		switch {
		case err != nil:
			return tailGap{}, err
		case last == nil:
			return tailGap{decided: true}, nil // central holds none of the site
		case !last.Time.Before(since):
			return tailGap{}, nil // stored just now: look again
		}
		held, ok := sourceSeq(last, k)
		switch {
		case !ok || acked == held:
			return tailGap{decided: true}, nil
		case acked < held:
			// Central has not acknowledged all it holds yet (its
			// source skips what it holds, and acknowledges it, after a
			// restart): look again.
			return tailGap{}, nil
		}
		return confirmGap(nc, k, held+1, acked)
	}
	next, ok := sourceSeq(after, k)
	if !ok {
		return tailGap{decided: true}, nil
	}
	before, err := lastBefore(nc, k.stream, subj, after.Sequence)
	if err != nil || before == nil {
		return tailGap{decided: err == nil}, err
	}
	held, ok := sourceSeq(before, k)
	if !ok || next <= held+1 {
		return tailGap{decided: true}, nil
	}
	return confirmGap(nc, k, held+1, next-1)
}

// confirmGap returns the gap from..to of k unless central holds the site's
// event at from. A gap that central holds comes after a refetch: the last
// event of the site central stored then came through the refetch, older
// than those its own source had stored before it (the newest it holds).
func confirmGap(nc *nats.Conn, k sourceKey, from, to uint64) (tailGap, error) {
	holds, err := centralHolds(nc, k, from)
	switch {
	case err != nil:
		return tailGap{}, err // look again
	case holds:
		return tailGap{decided: true}, nil
	}
	return tailGap{decided: true, from: from, to: to}, nil
}

// centralHolds bound: central's stored time of a site's event may be
// earlier than the site's by clockSlack (the two clocks differ), and
// centralHolds reads at most holdsMost of central's events.
const (
	clockSlack = 5 * time.Minute
	holdsMost  = 200
)

// centralHolds reports whether central holds the site's event at seq of
// k's stream: it reads the event's subject and time at the site, then
// central's events on that subject stored since, for one that came from
// seq. False too when the site no longer holds the event.
func centralHolds(nc *nats.Conn, k sourceKey, seq uint64) (bool, error) {
	m, err := askSite(nc, "$JS."+k.site+".API.STREAM.MSG.GET."+k.stream, siteReplyInbox(k.site), fmt.Appendf(nil, `{"seq":%d}`, seq), answerWithin)
	if err != nil {
		return false, fmt.Errorf("the site did not answer: %w", err)
	}
	at, err := bus.ReadStoredMsg(m.Data)
	if err != nil || at == nil {
		return false, err
	}
	since := at.Time.Add(-clockSlack)
	req := bus.MsgGetRequest{NextFor: at.Subject, StartTime: &since}
	for range holdsMost {
		c, err := msgGet(nc, k.stream, req)
		if err != nil || c == nil {
			return false, err
		}
		if s, ok := sourceSeq(c, k); ok && s == seq {
			return true, nil
		}
		req = bus.MsgGetRequest{Seq: c.Sequence + 1, NextFor: at.Subject}
	}
	return false, nil
}

// sourceSubjects are the subjects of k's site in central's stream.
func sourceSubjects(k sourceKey) string {
	if k.stream == bus.MetricsStream {
		return bus.MetricFilter(k.site, "", "")
	}
	return bus.EventFilter(k.site, "", "")
}

// lastBefore returns the last message on subj in stream below sequence
// limit, or nil: a search over next-by-subject reads, about log2(limit)
// of them.
func lastBefore(nc *nats.Conn, stream, subj string, limit uint64) (*bus.StoredMsg, error) {
	var best *bus.StoredMsg
	lo, hi := uint64(1), limit
	for lo < hi {
		mid := lo + (hi-lo)/2
		m, err := msgGet(nc, stream, bus.MsgGetRequest{Seq: mid, NextFor: subj})
		if err != nil {
			return nil, err
		}
		if m != nil && m.Sequence < limit {
			best, lo = m, m.Sequence+1
		} else {
			hi = mid
		}
	}
	return best, nil
}

// sourceSeq is the sequence in the site's stream of a message central
// stored through k's source; ok is false when the message did not come
// through that source.
func sourceSeq(m *bus.StoredMsg, k sourceKey) (uint64, bool) {
	return bus.SiteSourceSeq(m.Header, k.stream, k.site)
}

// msgGet asks central's JetStream for one message of stream, within
// answerWithin; nil when there is none.
func msgGet(nc *nats.Conn, stream string, req bus.MsgGetRequest) (*bus.StoredMsg, error) {
	ctx, cancel := context.WithTimeout(context.Background(), answerWithin)
	defer cancel()
	return bus.GetStoredMsg(ctx, nc, stream, req)
}

// resetSiteConsumer resets k's consumer called consumer at the site to
// deliver from sequence from on, and waits for the site's answer.
func resetSiteConsumer(nc *nats.Conn, k sourceKey, consumer string, from uint64) error {
	subject := "$JS." + k.site + ".API.CONSUMER.RESET." + k.stream + "." + consumer
	m, err := askSite(nc, subject, siteReplyInbox(k.site), fmt.Appendf(nil, `{"seq":%d}`, from), answerWithin)
	if err != nil {
		return fmt.Errorf("the site did not answer: %w", err)
	}
	var resp struct {
		Error *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return err
	}
	if resp.Error != nil {
		return errors.New(resp.Error.Description)
	}
	return nil
}

// Refetch pacing: how often the refetch asks the sites how far their
// consumers are, and how long one may stand still before the refetch
// gives it up.
const (
	refetchPoll  = 250 * time.Millisecond
	refetchStall = 30 * time.Second
)

// mendTails checks the tails of the sources answers name (see above) and
// fetches again what central lost of each, over the account's connection:
// the sources of each stream together, the streams side by side.
func (p *Peer) mendTails(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, account string, tw *tailWatch, answers map[sourceKey]siteProgress) {
	gaps := map[sourceKey]tailGap{}
	for _, k := range tw.toCheck(answers) {
		g, err := checkTail(nc, k, answers[k].acked, tw.since)
		if err != nil {
			p.log.Debug("peer source watch: check what central holds of a site", "account", account, "stream", k.stream, "site", k.site, "err", err)
			continue
		}
		if !g.decided {
			continue
		}
		tw.settle(k)
		if g.from == 0 {
			continue
		}
		p.log.Warn("central lost events of a site that it had acknowledged (its store's tail: a power cut without fsync, a truncated file, an older copy of its data); fetching them again from the site",
			"account", account, "stream", k.stream, "site", k.site, "lost_from", g.from, "lost_to", g.to)
		gaps[k] = g
	}
	var wg sync.WaitGroup
	for stream, sites := range byStream(slices.Collect(maps.Keys(gaps))) {
		wg.Go(func() { p.refetch(ctx, nc, js, account, stream, sites, gaps) })
	}
	wg.Wait()
}

// refetch fetches again, through the sites' refetch consumers, the gaps
// central lost of stream from sites (see above).
func (p *Peer) refetch(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, account, stream string, sites []string, gaps map[sourceKey]tailGap) {
	failed := func(site string, err error) {
		g := gaps[sourceKey{stream: stream, site: site}]
		p.log.Error("central lost events of a site that it had acknowledged, and fetching them again failed: they stay missing at central (the site still holds them)",
			"account", account, "stream", stream, "site", site, "lost_from", g.from, "lost_to", g.to, "err", err)
	}
	// Each refetch goes at least as far as central held of its site when
	// it began: past there its site's own source takes over again.
	upto := map[string]uint64{}
	var ready []string
	for _, site := range sites {
		k := sourceKey{stream: stream, site: site}
		g := gaps[k]
		upto[site] = g.to
		if last, err := msgGet(nc, stream, bus.MsgGetRequest{LastFor: sourceSubjects(k)}); err == nil && last != nil {
			if seq, ok := sourceSeq(last, k); ok {
				upto[site] = max(upto[site], seq)
			}
		}
		if err := resetSiteConsumer(nc, k, bus.RefetchConsumer(stream), g.from); err != nil {
			failed(site, fmt.Errorf("reset the site's refetch consumer: %w", err))
			continue
		}
		ready = append(ready, site)
	}
	if len(ready) == 0 {
		return
	}
	if err := bus.SourceThrough(ctx, js, stream, ready, true); err != nil {
		for _, site := range ready {
			failed(site, err)
		}
		return
	}
	defer func() {
		// Back to the sites' own consumers, even as the peer stops: a
		// source left on a refetch consumer would work, but the keepers
		// and the watch look after the own ones.
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := bus.SourceThrough(bctx, js, stream, ready, false); err != nil {
			p.log.Error("central fetched again what it had lost of its sites; sourcing them through their own consumers again failed", "account", account, "stream", stream, "sites", ready, "err", err)
		}
	}()
	type progress struct {
		acked uint64
		moved time.Time
	}
	pending := map[string]progress{}
	for _, site := range ready {
		pending[site] = progress{moved: p.now()}
	}
	for len(pending) > 0 {
		select {
		case <-ctx.Done():
			return
		case <-time.After(refetchPoll):
		}
		for site, pr := range pending {
			k := sourceKey{stream: stream, site: site}
			a, ok := askProgress(nc, k, bus.RefetchConsumer(stream), siteReplyInbox(site), answerWithin)
			switch {
			case ok && a.acked >= upto[site]:
				delete(pending, site)
				g := gaps[k]
				p.log.Info("central fetched again the events of a site it had lost", "account", account, "stream", stream, "site", site, "lost_from", g.from, "lost_to", g.to)
			case ok && a.acked > pr.acked:
				pending[site] = progress{acked: a.acked, moved: p.now()}
			case p.now().Sub(pr.moved) > refetchStall:
				delete(pending, site)
				failed(site, fmt.Errorf("the site's refetch consumer stood at %d for %s, short of %d", pr.acked, refetchStall, upto[site]))
			}
		}
	}
}
