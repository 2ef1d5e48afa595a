package bench

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/backoff"
	"github.com/meshmon/meshmon/poller"
	"github.com/meshmon/meshmon/storage"
)

// The latency run follows each event along the path a poller's event
// takes, and times it at every point it passes:
//
//	observed -> spooled (the poller's bbolt spool, fsynced)
//	         -> sent (the drain read it from the spool and published it)
//	         -> site stored (the site stream's timestamp of it)
//	         -> central stored (the timestamp central's stream leader gave
//	            it as it took it from the site's source consumer)
//	         -> central committed (central's stored feed carried it to a
//	            subscriber on central: the leader republishes a message
//	            there once the R3 commit applied it)
//
// and, beside the chain, site acked: when the site's ack reached the
// drain, after the site's fsync.
type eventTimes struct {
	observed, spooled, sent, acked, siteStored, centralStored, committed time.Time
}

// hop is one leg of the path, timed for every event.
type hop struct {
	Name string `json:"hop"`
	P50  string `json:"p50"`
	P99  string `json:"p99"`
	Max  string `json:"max"`
}

// hops are the legs of the path (see eventTimes).
var hops = []struct {
	name     string
	from, to func(eventTimes) time.Time
}{
	{"poller spool commit (observed -> spooled)", func(e eventTimes) time.Time { return e.observed }, func(e eventTimes) time.Time { return e.spooled }},
	{"wait in the spool (spooled -> sent by the drain)", func(e eventTimes) time.Time { return e.spooled }, func(e eventTimes) time.Time { return e.sent }},
	{"site store (sent -> site stored)", func(e eventTimes) time.Time { return e.sent }, func(e eventTimes) time.Time { return e.siteStored }},
	{"site fsync + ack (site stored -> ack at the drain)", func(e eventTimes) time.Time { return e.siteStored }, func(e eventTimes) time.Time { return e.acked }},
	{"source over the leaf (site stored -> central stored)", func(e eventTimes) time.Time { return e.siteStored }, func(e eventTimes) time.Time { return e.centralStored }},
	{"central R3 commit (central stored -> stored feed)", func(e eventTimes) time.Time { return e.centralStored }, func(e eventTimes) time.Time { return e.committed }},
	{"end to end (observed -> central committed)", func(e eventTimes) time.Time { return e.observed }, func(e eventTimes) time.Time { return e.committed }},
}

// hopStats times every hop over events, in hops' order.
func hopStats(events map[string]*eventTimes) []hop {
	out := make([]hop, 0, len(hops))
	for _, h := range hops {
		d := make([]time.Duration, 0, len(events))
		for _, e := range events {
			if e.complete() {
				d = append(d, h.to(*e).Sub(h.from(*e)))
			}
		}
		slices.Sort(d)
		out = append(out, hop{Name: h.name, P50: hopQuantile(d, 50), P99: hopQuantile(d, 99), Max: hopQuantile(d, 100)})
	}
	return out
}

func hopQuantile(d []time.Duration, pct int) string {
	if len(d) == 0 {
		return "-"
	}
	return d[min(len(d)*pct/100, len(d)-1)].Round(100 * time.Microsecond).String()
}

func printHops(w io.Writer, hs []hop) {
	for _, h := range hs {
		fmt.Fprintf(w, "  %-58s p50 %-9s p99 %-9s max %s\n", h.Name, h.P50, h.P99, h.Max)
	}
}

// latencyTrace is one latency run: the times of its events by id.
type latencyTrace struct {
	mu     sync.Mutex
	events map[string]*eventTimes
	// The drains' batches, all sites together (see timedPublisher).
	gaps    []time.Duration
	batches []int
}

// drainStats describes the drains' batches: their sizes, and the time
// from one batch's ack to the next batch's send.
func (lt *latencyTrace) drainStats() string {
	slices.Sort(lt.gaps)
	slices.Sort(lt.batches)
	if len(lt.batches) == 0 {
		return "no batches"
	}
	return fmt.Sprintf("%d batches of p50 %d, max %d events; from an ack to the next send (the spool's ack commit, its next read) p50 %s, p99 %s, max %s",
		len(lt.batches), lt.batches[len(lt.batches)/2], lt.batches[len(lt.batches)-1], hopQuantile(lt.gaps, 50), hopQuantile(lt.gaps, 99), hopQuantile(lt.gaps, 100))
}

func (lt *latencyTrace) at(id string) *eventTimes {
	e := lt.events[id]
	if e == nil {
		e = &eventTimes{}
		lt.events[id] = e
	}
	return e
}

// timedPublisher is the drain's publisher: it notes when each message was
// sent and when its ack came back.
// It is used by one drain.
type timedPublisher struct {
	pub *bus.Publisher
	lt  *latencyTrace
	// lastAck is when the last batch's ack came back; gaps are the times
	// from each ack to the next batch's send (the drain's spool ack and
	// its next read), and batches the size of each batch.
	lastAck time.Time
	gaps    []time.Duration
	batches []int
}

func (p *timedPublisher) PublishBatch(ctx context.Context, msgs []meshmon.Message) (int, error) {
	sent := time.Now()
	if !p.lastAck.IsZero() {
		p.gaps = append(p.gaps, sent.Sub(p.lastAck))
	}
	p.batches = append(p.batches, len(msgs))
	n, err := p.pub.PublishBatch(ctx, msgs)
	now := time.Now()
	p.lastAck = now
	p.lt.mu.Lock()
	defer p.lt.mu.Unlock()
	for _, m := range msgs[:n] {
		e := p.lt.at(m.ID)
		e.sent, e.acked = sent, now
	}
	return n, err
}

// siteSpooler is one site's poller path in the latency run: a spool that
// takes each tick's events in one commit, and a drain that publishes them
// to the site as the poller's does (poller.Drainer).
type siteSpooler struct {
	site  string
	store *storage.DB
	pub   *timedPublisher
	wake  chan struct{}
}

// commit spools msgs, observed at their Time, and wakes the drain.
func (s *siteSpooler) commit(lt *latencyTrace, msgs []meshmon.Message) error {
	if err := s.store.Commit(msgs, nil); err != nil {
		return fmt.Errorf("spool at %s: %w", s.site, err)
	}
	now := time.Now()
	lt.mu.Lock()
	for _, m := range msgs {
		e := lt.at(m.ID)
		e.observed, e.spooled = m.Time, now
	}
	lt.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}

// drain publishes the spool until ctx is done and the spool is empty.
func (s *siteSpooler) drain(ctx context.Context, batch int, done <-chan struct{}) error {
	drainer := poller.NewDrainer(s.store, s.pub, batch, 10*time.Second)
	defer drainer.Close()
	for {
		n, read, err := drainer.Once(ctx)
		if err != nil {
			return fmt.Errorf("drain at %s: %w", s.site, err)
		}
		if read > 0 || n > 0 {
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-done:
			if n, _, err := s.store.SpoolStats(); err != nil || n == 0 {
				return err
			}
		case <-s.wake:
		}
	}
}

// latencyRun publishes at rate per second, split over the sites, in ticks
// of 10 ms, for d, through a poller spool and drain (of batch) per site, and times
// every event at each point of its path (eventTimes) and the drains'
// batches.
func latencyRun(ctx context.Context, dir string, sites []jetstream.JetStream, cjs jetstream.JetStream, firstN, rate, batch int, d time.Duration) (*latencyTrace, error) {
	lt := &latencyTrace{events: map[string]*eventTimes{}}
	per := max(int(float64(rate)*d.Seconds())/len(sites), 1)
	want := per * len(sites)
	// Central's stored feed is followed through the run: it times each
	// event as it is committed, not once the run is over.
	watched, ready := make(chan error, 1), make(chan struct{})
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go func() { watched <- watchCentral(wctx, cjs.Conn(), firstN, want, lt, ready) }()
	select {
	case <-ready:
	case err := <-watched:
		return nil, err
	}
	siteStart := make([]uint64, len(sites))
	for i, js := range sites {
		ss, err := js.Stream(ctx, bus.EventsStream)
		if err != nil {
			return nil, err
		}
		siteStart[i] = ss.CachedInfo().State.LastSeq + 1
	}
	if err := spoolAndDrain(ctx, dir, sites, lt, firstN, per, batch, d); err != nil {
		return nil, err
	}
	select {
	case err := <-watched:
		if err != nil {
			return nil, err
		}
	case <-time.After(2 * time.Minute):
		return nil, fmt.Errorf("latency: central did not commit the run's %d events within 2 minutes", want)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	for i, js := range sites {
		if err := readSiteStored(ctx, js, siteStart[i], per, lt); err != nil {
			return nil, err
		}
	}
	return lt, nil
}

// spoolAndDrain runs each site's spool and drain (siteSpooler) for d at
// per events per site in all, observed in ticks of 10 ms.
func spoolAndDrain(ctx context.Context, dir string, sites []jetstream.JetStream, lt *latencyTrace, firstN, per, batch int, d time.Duration) error {
	var wg sync.WaitGroup
	errs := make([]error, 2*len(sites))
	spoolers := make([]*siteSpooler, len(sites))
	for i, js := range sites {
		site := fmt.Sprintf("s%d", i+1)
		store, err := storage.Open(filepath.Join(dir, "spool-"+site+".db"), storage.Options{})
		if err != nil {
			return err
		}
		defer store.Close()
		spoolers[i] = &siteSpooler{site: site, store: store, pub: &timedPublisher{pub: bus.NewPublisher(js), lt: lt}, wake: make(chan struct{}, 1)}
	}
	start := time.Now()
	for i, sp := range spoolers {
		site := sp.site
		done := make(chan struct{})
		wg.Go(func() {
			errs[2*i+1] = sp.drain(ctx, batch, done)
			lt.mu.Lock()
			defer lt.mu.Unlock()
			lt.gaps, lt.batches = append(lt.gaps, sp.pub.gaps...), append(lt.batches, sp.pub.batches...)
		})
		wg.Go(func() {
			defer close(done)
			tick := 10 * time.Millisecond
			perTick := max(per*int(tick)/int(d), 1)
			for k := 0; k < per; k += perTick {
				if w := time.Until(start.Add(time.Duration(k/perTick) * tick)); w > 0 && !backoff.Sleep(ctx, w) {
					errs[2*i] = ctx.Err()
					return
				}
				msgs := make([]meshmon.Message, 0, perTick)
				for j := k; j < min(k+perTick, per); j++ {
					msgs = append(msgs, benchEvent(site, firstN+j, time.Now()))
				}
				if errs[2*i] = sp.commit(lt, msgs); errs[2*i] != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// watchCentral follows central's stored feed (bus.StoredPrefix: what
// central's stream leader republishes of each message once it is
// committed) until it has seen want of the run's events, and notes when
// each was stored (its Nats-Time-Stamp) and seen. ready is closed once it
// listens.
func watchCentral(ctx context.Context, nc *nats.Conn, firstN, want int, lt *latencyTrace, ready chan<- struct{}) error {
	// Room for every event of the run: a full channel would drop messages
	// (a slow consumer) and the run would wait for them in vain.
	msgs := make(chan *nats.Msg, want+1024)
	sub, err := nc.ChanSubscribe(bus.StoredPrefix+"ev.>", msgs)
	if err != nil {
		return fmt.Errorf("latency: central's stored feed: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.Flush(); err != nil {
		return fmt.Errorf("latency: central's stored feed: %w", err)
	}
	close(ready)
	for got := 0; got < want; {
		var m *nats.Msg
		select {
		case <-ctx.Done():
			return fmt.Errorf("latency: central's stored feed, %d of %d events seen: %w", got, want, ctx.Err())
		case m = <-msgs:
		}
		now := time.Now()
		var ev meshmon.Event
		ts, err := time.Parse(time.RFC3339Nano, m.Header.Get(jetstream.TimeStampHeaer))
		if err != nil || meshmon.DecodeEvent(m.Data, &ev) != nil || !ofRun(ev.ID, firstN) {
			continue
		}
		lt.mu.Lock()
		e := lt.at(ev.ID)
		e.centralStored, e.committed = ts, now
		lt.mu.Unlock()
		got++
	}
	return nil
}

// ofRun reports whether id (benchEvent's, <site>-<n>) is of the latency
// run, whose events are numbered from firstN: central's stored feed
// carries whatever central stores, a late copy of an earlier event too.
func ofRun(id string, firstN int) bool {
	_, num, ok := strings.Cut(id, "-")
	n, err := strconv.Atoi(num)
	return ok && err == nil && n >= firstN
}

// complete reports whether e was timed at every point of its path.
func (e eventTimes) complete() bool {
	for _, t := range []time.Time{e.observed, e.spooled, e.sent, e.acked, e.siteStored, e.centralStored, e.committed} {
		if t.IsZero() {
			return false
		}
	}
	return true
}

// readSiteStored reads n events of a site's stream from seq and notes when
// the site stored each.
func readSiteStored(ctx context.Context, js jetstream.JetStream, seq uint64, n int, lt *latencyTrace) error {
	s, err := js.Stream(ctx, bus.EventsStream)
	if err != nil {
		return err
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: seq})
	if err != nil {
		return err
	}
	for got := 0; got < n; {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return err
		}
		k := 0
		for m := range batch.Messages() {
			k++
			if id, ts, ok := eventStamp(m); ok {
				lt.mu.Lock()
				lt.at(id).siteStored = ts
				lt.mu.Unlock()
			}
		}
		if k == 0 {
			return fmt.Errorf("latency: site stream: read %d of %d events, then nothing (%v)", got, n, batch.Error())
		}
		got += k
	}
	return nil
}

// eventStamp is a stored event's id and the time its stream stored it.
func eventStamp(m jetstream.Msg) (string, time.Time, bool) {
	md, err := m.Metadata()
	var ev meshmon.Event
	if err != nil || meshmon.DecodeEvent(m.Data(), &ev) != nil {
		return "", time.Time{}, false
	}
	return ev.ID, md.Timestamp, true
}

// writeTrace writes events to path as CSV, in the order they were
// observed: the event's id and site, the time it was observed (Unix
// milliseconds, to set beside logs and profiles), then the milliseconds from
// the first observation at which it passed each point of its path
// (eventTimes), and when the site's ack reached the drain. Events not timed at every point
// are left out, as in the run's figures.
func writeTrace(path string, events map[string]*eventTimes) error {
	type row struct {
		id string
		e  eventTimes
	}
	rows := make([]row, 0, len(events))
	var start time.Time
	for id, e := range events {
		if !e.complete() {
			continue
		}
		rows = append(rows, row{id, *e})
		if start.IsZero() || e.observed.Before(start) {
			start = e.observed
		}
	}
	slices.SortFunc(rows, func(a, b row) int { return a.e.observed.Compare(b.e.observed) })
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--latency-trace: %w", err)
	}
	w := csv.NewWriter(f)
	_ = w.Write([]string{"id", "site", "observed_unix_ms", "observed_ms", "spooled_ms", "sent_ms", "site_stored_ms", "acked_ms", "central_stored_ms", "committed_ms"})
	ms := func(t time.Time) string {
		return strconv.FormatFloat(float64(t.Sub(start))/float64(time.Millisecond), 'f', 3, 64)
	}
	for _, r := range rows {
		site, _, _ := strings.Cut(r.id, "-")
		e := r.e
		_ = w.Write([]string{r.id, site, strconv.FormatFloat(float64(e.observed.UnixMicro())/1000, 'f', 3, 64), ms(e.observed), ms(e.spooled), ms(e.sent), ms(e.siteStored), ms(e.acked), ms(e.centralStored), ms(e.committed)})
	}
	w.Flush()
	if err := errors.Join(w.Error(), f.Close()); err != nil {
		return fmt.Errorf("--latency-trace: %w", err)
	}
	return nil
}
