package alarmbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/alarm"
	"github.com/meshmon/meshmon/bus"
)

// Processor settings.
const (
	// BatchMax is how many events the processor applies before it
	// stores their changes and its checkpoint.
	BatchMax = 500
	// TickEvery is how often maintenance windows are checked for a
	// beginning or an end over the open alarms.
	TickEvery = 5 * time.Second
	// inFlight is how many publishes the processor has unacknowledged at
	// most (the client refuses more than 4,000 by default).
	inFlight = 1000
	// storeWithin bounds the storing of one batch.
	storeWithin = 30 * time.Second
)

// Processor derives one tenant's alarms from its EVENTS stream at central:
// it applies each event (alarm.Set.Apply), publishes every change to the
// ALARMS stream (Nats-Msg-Id Change.MsgID, so a change published again
// after a takeover is stored once), puts each changed alarm in the alarms
// bucket, then moves its checkpoint (ProcessorBucket). It also takes the
// NOC's actions (ActionSubject) and the maintenance windows.
//
// Only one processor of a tenant may run at a time: its caller holds the
// tenant's lease (peer's tenant workers) and cancels ctx when it loses it.
// A processor that starts (after a crash or a takeover) loads the alarms
// from the bucket and the stream and applies again every event after the
// checkpoint: Apply is idempotent by EVENTS sequence, so none opens twice
// and no change of an event half stored before a crash is lost.
type Processor struct {
	Tenant string
	Log    *slog.Logger
	Now    func() time.Time // time.Now if nil
	// LateAfter is alarm.Set's: how long after its time an event may be
	// applied before its changes are late; 0 is alarm.DefaultLateAfter.
	LateAfter time.Duration
}

// Worker returns the processor as a tenant worker (peer's tenant workers
// run it in the account of tenant, "" for a central with its own users),
// with lateAfter as its LateAfter.
func Worker(log *slog.Logger, lateAfter time.Duration) func(ctx context.Context, nc *nats.Conn, tenant string) error {
	return func(ctx context.Context, nc *nats.Conn, tenant string) error {
		return (&Processor{Tenant: tenant, Log: log, LateAfter: lateAfter}).Run(ctx, nc)
	}
}

// run is one run of a processor: what it holds while it runs.
type run struct {
	*Processor
	js      jetstream.JetStream
	set     *alarm.Set
	proc    jetstream.KeyValue
	applied uint64 // the checkpoint
	rev     uint64 // the checkpoint's revision; 0 when not stored yet
	// sites is, per site, the highest sequence in the site's own stream
	// of an event applied (stored with the checkpoint).
	sites map[string]uint64
	// appliedBefore is, for a while after central's EVENTS lost a tail
	// this processor had applied, sites as it was then: an event of a
	// site at or below it that comes again (central's source watch
	// fetches a lost tail again from the sites) was applied, and is
	// skipped. Nil otherwise; it is kept with the checkpoint until
	// beforeUntil.
	appliedBefore map[string]uint64
	beforeUntil   time.Time
	stored        time.Time // when the checkpoint was stored
	// lastID is the Nats-Msg-Id of the event at the checkpoint, stored
	// with it: another event there, or none, says central lost it.
	lastID string
}

// storedCheckpoint is the processor's checkpoint as stored (AppliedKey):
// JSON, or, as an earlier release stored it, the sequence alone in
// decimal.
type storedCheckpoint struct {
	Applied     uint64            `json:"applied"`
	LastID      string            `json:"last_id,omitempty"`
	Sites       map[string]uint64 `json:"sites,omitempty"`
	Before      map[string]uint64 `json:"applied_before,omitempty"`
	BeforeUntil time.Time         `json:"applied_before_until,omitzero"`
}

// skipFor is how long after a lost tail the processor skips the events it
// applied before that come again: central's EVENTS duplicate window (its
// default), within which the source watch fetches them.
const skipFor = 10 * time.Minute

func parseCheckpoint(v []byte) (storedCheckpoint, error) {
	var c storedCheckpoint
	if len(v) > 0 && v[0] == '{' {
		err := json.Unmarshal(v, &c)
		return c, err
	}
	var err error
	c.Applied, err = strconv.ParseUint(string(v), 10, 64)
	return c, err
}

// Run processes until ctx is done (it returns nil then) or something fails
// (an error: its caller runs it again, after a pause).
func (p *Processor) Run(ctx context.Context, nc *nats.Conn) error {
	if p.Now == nil {
		p.Now = time.Now
	}
	if p.Log == nil {
		p.Log = slog.New(slog.DiscardHandler)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	r := &run{Processor: p, js: js, set: alarm.NewSet(p.Tenant)}
	r.set.LateAfter = p.LateAfter
	if err := r.start(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // (before the wait: the goroutines end with ctx)
	windows, err := r.watchWindows(ctx, &wg)
	if err != nil {
		return err
	}
	actions := make(chan *nats.Msg, 256)
	sub, err := nc.ChanSubscribe(ActionPrefix+".*.*", actions)
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", ActionPrefix, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	events, err := r.readEvents(ctx, &wg)
	if err != nil {
		return err
	}
	p.Log.Info("alarm processor running", "tenant", p.Tenant, "alarms", r.set.Len(), "from_event", r.applied+1)
	return r.loop(ctx, events, actions, windows)
}

// loop is the processor's one goroutine over the set: events, actions,
// windows and ticks, one at a time.
func (r *run) loop(ctx context.Context, events <-chan eventMsg, actions <-chan *nats.Msg, windows <-chan []alarm.Window) error {
	tick := time.NewTicker(TickEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e := <-events:
			if err := r.applyBatch(ctx, e, events); err != nil {
				return err
			}
		case m := <-actions:
			if err := r.act(ctx, m); err != nil {
				return err
			}
		case ws := <-windows:
			r.set.SetWindows(ws)
		case <-tick.C:
			if err := r.store(ctx, r.set.Tick(r.Now()), 0); err != nil {
				return err
			}
		}
	}
}

// start ensures the streams and loads the alarms and the checkpoint.
func (r *run) start(ctx context.Context) error {
	replicas, err := eventsReplicas(ctx, r.js)
	if err != nil {
		return err
	}
	if err := Ensure(ctx, r.js, replicas); err != nil {
		return err
	}
	if r.proc, err = r.js.KeyValue(ctx, ProcessorBucket); err != nil {
		return err
	}
	r.sites = map[string]uint64{}
	switch e, err := r.proc.Get(ctx, AppliedKey); {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return fmt.Errorf("alarm checkpoint: %w", err)
	default:
		c, err := parseCheckpoint(e.Value())
		if err != nil {
			return fmt.Errorf("alarm checkpoint %q: %w", e.Value(), err)
		}
		r.applied, r.rev, r.stored, r.lastID = c.Applied, e.Revision(), e.Created(), c.LastID
		maps.Copy(r.sites, c.Sites)
		if r.Now().Before(c.BeforeUntil) {
			r.appliedBefore, r.beforeUntil = c.Before, c.BeforeUntil
		}
	}
	if err := r.load(ctx); err != nil {
		return err
	}
	return r.rewind(ctx)
}

// rewind takes the processor back to where central's EVENTS lost the
// events it had applied, if it did: a tail lost to a power cut without
// fsync, a damaged file, an older copy of central's data. It did if the
// event at the checkpoint is another than the one applied there, or none
// while the stream still holds what came before. The stream numbers what
// it stores next from its end again: new events, and the lost ones that
// central's source watch fetches again from the sites. Every event stored
// since the checkpoint was stored is newer than every one it applied, so
// the first of those (or the stream's end, if none came yet) is where the
// numbering starts again. The processor reads on from there, applies the
// new events, and skips for a while (skipFor) those it applied before that
// come again (applyBatch). The alarms changed by the lost events take the
// next event of their checks as new again (alarm.Set.Rewind); they and the
// checkpoint are stored at once, so a processor that starts again before
// its next batch finds them so.
func (r *run) rewind(ctx context.Context) error {
	if r.applied == 0 || r.lastID == "" { // none, or stored by an earlier release
		return nil
	}
	s, err := r.js.Stream(ctx, bus.EventsStream)
	if err != nil {
		return fmt.Errorf("read %s: %w", bus.EventsStream, err)
	}
	state := s.CachedInfo().State
	switch m, err := s.GetMsg(ctx, r.applied); {
	case err == nil && m.Header.Get(jetstream.MsgIDHeader) == r.lastID:
		return nil
	case errors.Is(err, jetstream.ErrMsgNotFound) && r.applied < state.FirstSeq:
		return nil // aged out of the stream: it holds later events only
	case err != nil && !errors.Is(err, jetstream.ErrMsgNotFound):
		return fmt.Errorf("read %s: %w", bus.EventsStream, err)
	}
	from := state.LastSeq + 1
	next, err := firstStoredSince(ctx, r.js, r.stored)
	if err != nil {
		return fmt.Errorf("read %s: %w", bus.EventsStream, err)
	}
	if next > 0 {
		from = next
	}
	from = max(min(from, r.applied), 1)
	r.Log.Warn("alarm processor: central's EVENTS lost events the processor had applied (its tail: a power cut without fsync, a damaged file, an older copy of its data); reading on from where it numbers events again, skipping those it applied that come again",
		"tenant", r.Tenant, "applied", r.applied, "from_event", from, "events_last", state.LastSeq)
	rewound := r.set.Rewind(from - 1)
	msgs := make([]*nats.Msg, 0, len(rewound))
	for _, a := range rewound {
		b, _ := json.Marshal(a)
		msgs = append(msgs, &nats.Msg{Subject: bus.KVSubject(alarm.Bucket, a.ID), Data: b})
	}
	sctx, cancel := context.WithTimeout(ctx, storeWithin)
	defer cancel()
	if err := r.publish(sctx, msgs); err != nil {
		return fmt.Errorf("put alarms: %w", err)
	}
	r.appliedBefore, r.beforeUntil, r.lastID = maps.Clone(r.sites), r.Now().Add(skipFor), ""
	if m, err := s.GetMsg(sctx, from-1); err == nil {
		r.lastID = m.Header.Get(jetstream.MsgIDHeader)
	}
	return r.saveCheckpoint(sctx, from-1)
}

// firstStoredSince returns the sequence of the first event central's
// EVENTS stored at or after t, or 0 if none.
func firstStoredSince(ctx context.Context, js jetstream.JetStream, t time.Time) (uint64, error) {
	m, err := bus.GetStoredMsg(ctx, js.Conn(), bus.EventsStream, bus.MsgGetRequest{NextFor: bus.EventFilter("", "", ""), StartTime: &t})
	if err != nil || m == nil {
		return 0, err
	}
	return m.Sequence, nil
}

// load reads the alarms from the bucket and the latest change of each from
// the ALARMS stream: the bucket is written after the stream, so after a
// crash the stream may be ahead (Set.Load keeps the higher Seq).
func (r *run) load(ctx context.Context) error {
	entries, err := bus.ReadBucket(ctx, r.js, alarm.Bucket)
	if err != nil {
		return fmt.Errorf("read %s: %w", alarm.Bucket, err)
	}
	for _, e := range entries {
		var a alarm.Alarm
		if err := json.Unmarshal(e.Value, &a); err != nil {
			r.Log.Warn("alarm processor: an alarm that does not decode is left out", "key", e.Key, "err", err)
			continue
		}
		r.set.Load(a)
	}
	return LastChanges(ctx, r.js, func(c alarm.Change) { r.set.Load(c.Alarm) })
}

// LastChanges calls f with the latest change of each alarm that the
// ALARMS stream holds.
func LastChanges(ctx context.Context, js jetstream.JetStream, f func(alarm.Change)) error {
	s, err := js.Stream(ctx, alarm.Stream)
	if err != nil {
		return err
	}
	if s.CachedInfo().State.Msgs == 0 {
		return nil
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy, FilterSubjects: []string{"alarm.>"}})
	if err != nil {
		return err
	}
	for {
		batch, err := c.FetchNoWait(1000)
		if err != nil {
			return err
		}
		got := 0
		var pending uint64
		for m := range batch.Messages() {
			got++
			var ch alarm.Change
			if json.Unmarshal(m.Data(), &ch) == nil {
				f(ch)
			}
			if md, err := m.Metadata(); err == nil {
				pending = md.NumPending
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return err
		}
		if got == 0 || pending == 0 {
			return nil
		}
	}
}

// eventMsg is one event read from EVENTS, or the error that ended the
// reading.
type eventMsg struct {
	ev  meshmon.Event
	seq uint64
	id  string // its Nats-Msg-Id
	// siteSeq is the event's sequence in its site's own stream; 0 if
	// it did not come through its site's source.
	siteSeq uint64
	err     error
}

// readEvents reads EVENTS from after the checkpoint, in order, into the
// returned channel, until ctx is done.
func (r *run) readEvents(ctx context.Context, wg *sync.WaitGroup) (<-chan eventMsg, error) {
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	if r.applied > 0 {
		cfg = jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: r.applied + 1}
	}
	c, err := r.js.OrderedConsumer(ctx, bus.EventsStream, cfg)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", bus.EventsStream, err)
	}
	it, err := c.Messages(jetstream.PullMaxMessages(BatchMax))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", bus.EventsStream, err)
	}
	out := make(chan eventMsg, BatchMax)
	wg.Go(func() { <-ctx.Done(); it.Stop() })
	wg.Go(func() {
		// Events that do not decode, or that CheckEvent refuses (a
		// poller's credential may publish anything on its site's
		// subjects), change nothing. They are logged once a minute at
		// most, with how many there were: one line each flooded
		// central's log.
		var refused int
		var warned time.Time
		for {
			m, err := it.Next()
			var e eventMsg
			if err != nil {
				e.err = err
			} else if md, merr := m.Metadata(); merr != nil {
				e.err = merr
			} else {
				e.seq, e.id = md.Sequence.Stream, m.Headers().Get(jetstream.MsgIDHeader)
				if jerr := bus.ReadEvent(m.Subject(), m.Headers(), m.Data(), &e.ev); jerr == nil {
					e.siteSeq, _ = bus.SiteSourceSeq(m.Headers(), bus.EventsStream, e.ev.Data.Site)
				} else {
					refused++
					if now := time.Now(); now.Sub(warned) >= time.Minute {
						r.Log.Warn("alarm processor: events that do not decode, or are not what their subject says, change nothing (logged once a minute at most)",
							"seq", e.seq, "err", jerr, "refused_since_last_logged", refused)
						warned, refused = now, 0
					}
					e.ev = meshmon.Event{}
				}
			}
			select {
			case out <- e:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	})
	return out, nil
}

// applyBatch applies e and whatever else has been read already (up to
// BatchMax events), then stores the changes and the checkpoint.
func (r *run) applyBatch(ctx context.Context, e eventMsg, more <-chan eventMsg) error {
	var changes []alarm.Change
	var last uint64
	skipped := 0
	now := r.Now()
	for n := 1; ; n++ {
		if e.err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read %s: %w", bus.EventsStream, e.err)
		}
		site := e.ev.Data.Site
		switch {
		case e.siteSeq > 0 && e.siteSeq <= r.appliedBefore[site]:
			skipped++ // applied before central lost it
		case e.siteSeq > 0:
			r.sites[site] = max(r.sites[site], e.siteSeq)
			fallthrough
		default:
			changes = append(changes, r.set.Apply(e.ev, e.seq, now)...)
		}
		last, r.lastID = e.seq, e.id
		if n == BatchMax || len(more) == 0 {
			r.Log.Debug("alarm processor: batch", "events", n, "changes", len(changes), "skipped", skipped)
			break
		}
		e = <-more
	}
	return r.store(ctx, changes, last)
}

// store publishes changes to ALARMS, puts the alarms they leave in the
// bucket and, with applied > 0, moves the checkpoint to it (an update that
// expects its last revision: a processor that finds it moved by another
// stops). Changes and alarms go in atomic batches (one fsync each under
// SyncAlways), in order; a batch refused whole (a change stored already,
// by a processor before a crash) goes again message by message, where
// the stream drops what it holds by Nats-Msg-Id.
func (r *run) store(ctx context.Context, changes []alarm.Change, applied uint64) error {
	ctx, cancel := context.WithTimeout(ctx, storeWithin)
	defer cancel()
	if len(changes) > 0 {
		msgs := make([]*nats.Msg, 0, len(changes))
		latest := map[string]int{} // alarm ID -> index in changes of its last
		for i, c := range changes {
			b, err := json.Marshal(c)
			if err != nil {
				return err
			}
			m := nats.NewMsg(alarm.ChangeSubject(c.Alarm))
			m.Data = b
			m.Header.Set(jetstream.MsgIDHeader, c.MsgID())
			msgs = append(msgs, m)
			latest[c.Alarm.ID] = i
		}
		if err := r.publish(ctx, msgs); err != nil {
			return fmt.Errorf("publish alarm changes: %w", err)
		}
		msgs = msgs[:0]
		for i, c := range changes {
			if latest[c.Alarm.ID] != i {
				continue
			}
			b, _ := json.Marshal(c.Alarm)
			msgs = append(msgs, &nats.Msg{Subject: bus.KVSubject(alarm.Bucket, c.Alarm.ID), Data: b})
		}
		if err := r.publish(ctx, msgs); err != nil {
			return fmt.Errorf("put alarms: %w", err)
		}
	}
	if applied <= r.applied {
		return nil
	}
	return r.saveCheckpoint(ctx, applied)
}

// saveCheckpoint stores the checkpoint at applied, with the sites' marks,
// as an update that expects its last revision: a processor that finds it
// moved by another stops.
func (r *run) saveCheckpoint(ctx context.Context, applied uint64) error {
	c := storedCheckpoint{Applied: applied, LastID: r.lastID, Sites: r.sites}
	if r.Now().Before(r.beforeUntil) {
		c.Before, c.BeforeUntil = r.appliedBefore, r.beforeUntil
	} else {
		r.appliedBefore = nil
	}
	v, err := json.Marshal(c)
	if err != nil {
		return err
	}
	var rev uint64
	if r.rev == 0 {
		rev, err = r.proc.Create(ctx, AppliedKey, v)
	} else {
		rev, err = r.proc.Update(ctx, AppliedKey, v, r.rev)
	}
	if err != nil {
		return fmt.Errorf("alarm checkpoint (another processor may have taken over): %w", err)
	}
	r.applied, r.rev = applied, rev
	return nil
}

// publish stores msgs (of one stream) in order: atomic batches of at most
// bus.DefaultMaxAtomic, each refused one again message by message.
func (r *run) publish(ctx context.Context, msgs []*nats.Msg) error {
	for len(msgs) > 0 {
		n := min(len(msgs), bus.DefaultMaxAtomic)
		err := bus.PublishAtomic(ctx, r.js.Conn(), msgs[:n])
		if errors.Is(err, bus.ErrAtomicRefused) {
			err = r.publishEach(ctx, msgs[:n])
		}
		if err != nil {
			return err
		}
		msgs = msgs[n:]
	}
	return nil
}

// publishEach publishes msgs one by one, pipelined, and waits for every
// acknowledgement.
func (r *run) publishEach(ctx context.Context, msgs []*nats.Msg) error {
	var futs []jetstream.PubAckFuture
	for _, m := range msgs {
		f, err := r.js.PublishMsgAsync(m)
		if err != nil {
			return err
		}
		futs = append(futs, f)
		if len(futs) == inFlight {
			if err := waitAcks(ctx, futs); err != nil {
				return err
			}
			futs = futs[:0]
		}
	}
	return waitAcks(ctx, futs)
}

// waitAcks waits for every future's acknowledgement.
func waitAcks(ctx context.Context, futs []jetstream.PubAckFuture) error {
	for _, f := range futs {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// ActionReply is the processor's answer to an action.
type ActionReply struct {
	Changes []alarm.Change `json:"changes,omitempty"`
	Error   string         `json:"error,omitempty"`
	// Code says which error: "invalid", "not_found", "not_open",
	// "no_change"; "" for another.
	Code string `json:"code,omitempty"`
}

// act takes one action request: the acting user is the subject's second
// token (alarmop.<user>.<verb>), which the user's permissions allow only
// for its own name; the body is an alarm.Action whose By is ignored.
func (r *run) act(ctx context.Context, m *nats.Msg) error {
	tok := strings.Split(m.Subject, ".")
	var a alarm.Action
	reply := ActionReply{}
	if err := json.Unmarshal(m.Data, &a); err != nil || len(tok) != 3 {
		reply.Error, reply.Code = fmt.Sprintf("the request is not an action: %v", err), "invalid"
	} else {
		a.By, a.Verb = tok[1], tok[2]
		cs, err := r.set.Act(a, r.Now().UTC())
		switch {
		case err != nil:
			reply.Error, reply.Code = err.Error(), errCode(err)
		default:
			if err := r.store(ctx, cs, 0); err != nil {
				return err // unanswered: the client retries the next processor
			}
			reply.Changes = cs
			r.Log.Info("alarm action", "tenant", r.Tenant, "alarm", a.ID, "verb", a.Verb, "by", a.By)
		}
	}
	if m.Reply != "" {
		b, _ := json.Marshal(reply)
		_ = m.Respond(b)
	}
	return nil
}

func errCode(err error) string {
	switch {
	case errors.Is(err, alarm.ErrInvalidAction):
		return "invalid"
	case errors.Is(err, alarm.ErrNotFound):
		return "not_found"
	case errors.Is(err, alarm.ErrNotOpen):
		return "not_open"
	case errors.Is(err, alarm.ErrNoChange):
		return "no_change"
	}
	return ""
}

// watchWindows loads the maintenance windows, then sends the whole list
// again on each change until ctx is done.
func (r *run) watchWindows(ctx context.Context, wg *sync.WaitGroup) (<-chan []alarm.Window, error) {
	kv, err := r.js.KeyValue(ctx, alarm.MaintenanceBucket)
	if err != nil {
		return nil, err
	}
	w, err := bus.WatchAllWhole(ctx, r.js, kv)
	if err != nil {
		return nil, err
	}
	cur := map[string]alarm.Window{}
	list := func() []alarm.Window {
		out := make([]alarm.Window, 0, len(cur))
		for _, w := range cur {
			out = append(out, w)
		}
		return out
	}
	take := func(e jetstream.KeyValueEntry) {
		if e.Operation() != jetstream.KeyValuePut {
			delete(cur, e.Key())
			return
		}
		var win alarm.Window
		if err := json.Unmarshal(e.Value(), &win); err != nil || win.Validate() != nil {
			r.Log.Warn("alarm processor: a maintenance window that is not valid is left out", "key", e.Key())
			return
		}
		cur[e.Key()] = win
	}
	for e := range w.Updates() { // the initial values, until nil
		if e == nil {
			break
		}
		take(e)
	}
	r.set.SetWindows(list())
	out := make(chan []alarm.Window)
	wg.Go(func() {
		defer func() { _ = w.Stop() }()
		for e := range w.Updates() {
			if e == nil {
				continue
			}
			take(e)
			select {
			case out <- list():
			case <-ctx.Done():
				return
			}
		}
	})
	return out, nil
}
