package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/internal/backoff"
)

// A site's pollers form a group. Each member heartbeats into PollersBucket
// at PollerKey (Registry); one member holds the lease at GroupLeaderKey in
// GroupBucket (an Elector: create-if-absent to win, a publish that expects
// the last revision to renew, a per-key TTL so that it lapses when its
// holder dies). The leader assigns every device of the site's inventory to
// one live member (meshmon.NextAssignment, a pure function) and writes the
// assignment's index at GroupAssignmentKey, by revision, so a deposed
// leader cannot overwrite a newer one, and its shards beside it (see
// assignment.go). Every member watches the
// assignment and polls what it is given. Every key carries the site (see
// PollerKey). This file is the mechanism: the watches, the lease, the
// writes; the decisions are meshmon.NextAssignment's and lead's.

// GroupConfig is how a poller takes part in its site's group.
type GroupConfig struct {
	Name     string // the poller's name, as in its heartbeats
	Instance string // the poller's instance id (see meshmon.PollerInfo)
	Site     string // the site: its group's keys, and its events (LastStates)
	// Lease is how long the leader's lease lasts without renewal: whole
	// seconds, at least 1 s. The leader renews it every quarter of it and
	// stops acting as leader when three quarters have passed since its
	// last renewal was sent, before the lease can pass to another member.
	Lease time.Duration
	// MemberTimeout is how long a member may go without a heartbeat
	// before the leader gives its devices to the others. The members'
	// heartbeat interval must be well below it.
	MemberTimeout time.Duration
	// Tick is how often the leader looks at the group when nothing
	// changed.
	Tick time.Duration
	// Probe is how late a member's heartbeat may be before it is asked
	// whether its connection is still up (see presence.go): one whose
	// connection closed is out at once, without waiting for
	// MemberTimeout. 0 turns it off; else at least Tick and below
	// MemberTimeout.
	Probe time.Duration
}

// DefaultGroupConfig returns the default timings: a 1 s lease and a member
// timeout of 2 s, with heartbeats every 100 ms, and a probe of a member
// two heartbeats late. On a loaded 2-core machine a 500 ms member
// timeout moved devices from live members within minutes; 2 s moved none
// in an hour (docs/operations.md). The probe moves a dead member's devices
// sooner than that.
func DefaultGroupConfig(name, instance, site string) GroupConfig {
	return GroupConfig{Name: name, Instance: instance, Site: site, Lease: time.Second, MemberTimeout: 2 * time.Second,
		Tick: 100 * time.Millisecond, Probe: 200 * time.Millisecond}
}

// Validate checks every field and names the first that breaks a rule.
func (c GroupConfig) Validate() error {
	if err := meshmon.ValidateName("poller name", c.Name); err != nil {
		return err
	}
	if err := meshmon.ValidateName("site", c.Site); err != nil {
		return err
	}
	switch {
	case c.Lease < time.Second || c.Lease%time.Second != 0:
		return fmt.Errorf("group lease %s: use whole seconds, at least 1s", c.Lease)
	case c.MemberTimeout < 200*time.Millisecond:
		return fmt.Errorf("group member timeout %s is too short; use at least 200ms", c.MemberTimeout)
	case c.Tick < 10*time.Millisecond || c.Tick > c.MemberTimeout:
		return fmt.Errorf("group tick %s: use at least 10ms and at most the member timeout", c.Tick)
	case c.Probe != 0 && (c.Probe < c.Tick || c.Probe >= c.MemberTimeout):
		return fmt.Errorf("group probe %s: use 0 (off), or at least the tick (%s) and less than the member timeout (%s)", c.Probe, c.Tick, c.MemberTimeout)
	}
	return nil
}

// LeaderLease is the value at GroupLeaderKey.
type LeaderLease struct {
	Name     string    `json:"name"`
	Instance string    `json:"instance,omitempty"`
	Since    time.Time `json:"since"`
}

// Group is one poller's seat in its site's poller group. Run takes part;
// Assignments delivers what the leader decides.
type Group struct {
	cfg GroupConfig
	js  jetstream.JetStream
	log *slog.Logger

	bindMu                  sync.Mutex
	group, pollers, devices jetstream.KeyValue
	// The lease, kept across reconnections so that a leader whose
	// connection came back goes on renewing it. Only Run's goroutine
	// uses it.
	elector *Elector
	// The shards of the assignment this member read or wrote last; only
	// Run's goroutine uses it.
	reader *assignmentReader

	mu      sync.Mutex
	leading bool
	since   time.Time // when this member last became leader
	out     chan meshmon.Assignment
}

// NewGroup returns a seat in the group of the site that js reaches; Run
// takes part. log may be nil.
func NewGroup(js jetstream.JetStream, cfg GroupConfig, log *slog.Logger) (*Group, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Group{cfg: cfg, js: js, log: log, out: make(chan meshmon.Assignment, 1)}, nil
}

// bind binds to the site's group, pollers and devices buckets, which
// EnsureStreams creates.
func (g *Group) bind(ctx context.Context) error {
	g.bindMu.Lock()
	defer g.bindMu.Unlock()
	if g.devices != nil {
		return nil
	}
	var group, pollers, devices jetstream.KeyValue
	for _, b := range []struct {
		name string
		kv   *jetstream.KeyValue
	}{{GroupBucket, &group}, {PollersBucket, &pollers}, {DevicesBucket, &devices}} {
		kv, err := g.js.KeyValue(ctx, b.name)
		if err != nil {
			return fmt.Errorf("poller group: bucket %s: %w", b.name, err)
		}
		*b.kv = kv
	}
	g.group, g.pollers, g.devices = group, pollers, devices
	g.elector = NewElector(g.js, group, GroupBucket, GroupLeaderKey(g.cfg.Site), g.cfg.Lease)
	g.reader = &assignmentReader{kv: group, site: g.cfg.Site}
	return nil
}

// Assignments delivers the group's assignment each time it changes; when
// the receiver is slow it gets the newest only.
func (g *Group) Assignments() <-chan meshmon.Assignment { return g.out }

// Current reads the group's assignment from the peer now, not from the
// watch: a member back from a cut asks before it publishes its spool.
func (g *Group) Current(ctx context.Context) (meshmon.Assignment, error) {
	if err := g.bind(ctx); err != nil {
		return meshmon.Assignment{}, err
	}
	return ReadAssignment(ctx, g.group, g.cfg.Site)
}

// stateKinds are the kinds of the site's events that carry a check's
// state; not traps: a device may send many. Stable ends a reboot flap,
// so it is the later of uptime's two.
var stateKinds = []string{meshmon.KindNodeDown, meshmon.KindNodeUp, meshmon.KindSNMPUnreachable, meshmon.KindSNMPReachable,
	meshmon.KindIfDown, meshmon.KindIfUp, meshmon.KindFlapping, meshmon.KindStable}

// sharedKinds are the state kinds whose subject (ev.<site>.<device>.<kind>)
// several checks of a device share: every interface's if_down, and the
// flapping of any check.
var sharedKinds = []string{meshmon.KindIfDown, meshmon.KindIfUp, meshmon.KindFlapping}

// lastStatesChunk is how many devices one consumer of LastStates reads:
// its filter subjects (one a device) stay far below the 1 MB of a request
// however many devices move, and the server, which compares a new
// consumer's filter subjects with each other, creates it quickly. With
// seven filters a device (one a state kind) and every message of them
// delivered, 500 devices in consumers of 64 took 2.3 to 4.8 s on a loaded
// 2-core machine (BenchmarkLastStatesChunk); see docs/operations.md for
// the figures since. A variable for that benchmark.
var lastStatesChunk = 64

// lastStatesSiteWide is how many devices LastStates reads with per-device
// filters at most; for more it reads the last state events of the whole
// site in one consumer (one filter a state kind) and keeps those of the
// devices asked for: a take-over of thousands of devices (10,000 and
// 30,000 per site, issue 23) made tens of consumers, four at a time, each
// created in 0.1 to 1 s on a loaded machine. Past it, one read costs the
// site's state subjects rather than the devices moved. A variable for the
// tests.
var lastStatesSiteWide = 4 * lastStatesChunk

// LastStates returns, for each of devices, the state of each of its
// checks as the site's events last announced it, with the kind of that
// event (the later of a check's down, up, flapping and stable): a member
// that takes devices over starts from there, so it does not announce
// again what the previous owner did, and ends a flap the previous owner
// began. It reads the last event of each subject, all devices at once
// (one consumer for every lastStatesChunk devices, read side by side, or
// one for the whole site past lastStatesSiteWide devices), and then every
// event of the shared kinds (sharedKinds) of the devices that have one:
// several checks share those subjects, so their last hides the others (a
// device that goes down and up flaps its icmp and its snmp; two
// interfaces down share if_down). Within ctx; a device the events say
// nothing of is absent from the result.
func (g *Group) LastStates(ctx context.Context, devices []string) (map[string]map[string]meshmon.LastState, error) {
	out := make(map[string]map[string]meshmon.LastState, len(devices))
	if len(devices) == 0 {
		return out, nil
	}
	stream, err := g.js.Stream(ctx, EventsStream)
	if err != nil {
		return nil, fmt.Errorf("last states of %d devices: %w", len(devices), err)
	}
	var chunks [][]string // the filters of each consumer
	var want map[string]bool
	if len(devices) > lastStatesSiteWide {
		want = make(map[string]bool, len(devices))
		for _, d := range devices {
			want[d] = true
		}
		var filters []string
		for _, k := range stateKinds {
			filters = append(filters, EventFilter(g.cfg.Site, "", k))
		}
		chunks = append(chunks, filters)
	} else {
		chunks = g.deviceFilters(devices)
	}
	var mu sync.Mutex
	seqs := map[[2]string]uint64{} // device and check -> the sequence of the state kept
	shared := map[string]bool{}    // devices with an event of a shared kind
	keep := func(m jetstream.Msg) {
		var ev meshmon.Event
		parts := strings.SplitN(m.Subject(), ".", 4) // ev.<site>.<device>.<kind>
		if len(parts) != 4 || want != nil && !want[parts[2]] || !slices.Contains(stateKinds, parts[3]) ||
			meshmon.DecodeEvent(m.Data(), &ev) != nil || ev.Data.State == "" || ev.Data.Check == "" {
			return
		}
		meta, err := m.Metadata()
		if err != nil {
			return
		}
		dev, key := parts[2], [2]string{parts[2], ev.Data.Check}
		mu.Lock()
		defer mu.Unlock()
		if slices.Contains(sharedKinds, parts[3]) {
			shared[dev] = true
		}
		// A check's state is in the later of its kinds.
		if meta.Sequence.Stream < seqs[key] {
			return
		}
		seqs[key] = meta.Sequence.Stream
		if out[dev] == nil {
			out[dev] = map[string]meshmon.LastState{}
		}
		out[dev][ev.Data.Check] = meshmon.LastState{Kind: ev.Data.Kind, State: ev.Data.State}
	}
	if err := readChunks(ctx, stream, chunks, jetstream.DeliverLastPerSubjectPolicy, keep); err != nil {
		return nil, fmt.Errorf("last states of %d devices: %w", len(devices), err)
	}
	if len(shared) > 0 {
		chunks = g.deviceFilters(slices.Sorted(maps.Keys(shared)), sharedKinds...)
		if len(shared) > lastStatesSiteWide {
			chunks = [][]string{nil}
			for _, k := range sharedKinds {
				chunks[0] = append(chunks[0], EventFilter(g.cfg.Site, "", k))
			}
		}
		if err := readChunks(ctx, stream, chunks, jetstream.DeliverAllPolicy, keep); err != nil {
			return nil, fmt.Errorf("flapping and interface events of %d devices: %w", len(shared), err)
		}
	}
	return out, nil
}

// deviceFilters are the filters of the site's events of devices, of kinds
// (none: any), lastStatesChunk devices a consumer.
func (g *Group) deviceFilters(devices []string, kinds ...string) [][]string {
	if len(kinds) == 0 {
		kinds = []string{""}
	}
	var chunks [][]string
	for i := 0; i < len(devices); i += lastStatesChunk {
		var filters []string
		for _, d := range devices[i:min(i+lastStatesChunk, len(devices))] {
			for _, k := range kinds {
				filters = append(filters, EventFilter(g.cfg.Site, d, k))
			}
		}
		chunks = append(chunks, filters)
	}
	return chunks
}

// readChunks reads s with one consumer for each filters of chunks, four
// at a time, handing f the messages policy delivers.
func readChunks(ctx context.Context, s jetstream.Stream, chunks [][]string, policy jetstream.DeliverPolicy, f func(jetstream.Msg)) error {
	var wg sync.WaitGroup
	errs := make([]error, len(chunks))
	sem := make(chan struct{}, 4)
	for i, filters := range chunks {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = readStream(ctx, s, filters, policy, f)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// readStream hands f the messages of stream s on filters that policy
// delivers (the last of each subject, or all) and removes its consumer
// after: a stream takes 1,000 consumers by default, and one left to time
// out per read would soon use them up.
func readStream(ctx context.Context, s jetstream.Stream, filters []string, policy jetstream.DeliverPolicy, f func(jetstream.Msg)) error {
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: filters, DeliverPolicy: policy,
		InactiveThreshold: 30 * time.Second})
	if err != nil {
		return err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = s.DeleteConsumer(dctx, c.CachedInfo().Name)
	}()
	for {
		batch, err := c.FetchNoWait(500)
		if err != nil {
			return err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			f(m)
		}
		if err := batch.Error(); err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// Leading reports whether this member acts as the group's leader now.
func (g *Group) Leading() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.leading
}

// whyStopping is why a member that stops leaves the lead.
const whyStopping = "stopping"

func (g *Group) setLeading(on bool, why string) {
	g.mu.Lock()
	changed := g.leading != on
	g.leading = on
	if on && changed {
		g.since = time.Now()
	}
	g.mu.Unlock()
	switch {
	case !changed:
	case on:
		g.log.Info("leading the poller group", "poller", g.cfg.Name)
	case why == whyStopping: // the member's own doing: nothing to warn of
		g.log.Info("no longer leading the poller group", "poller", g.cfg.Name, "why", why)
	default:
		g.log.Warn("no longer leading the poller group", "poller", g.cfg.Name, "why", why)
	}
}

func (g *Group) deliver(a meshmon.Assignment) {
	for {
		select {
		case g.out <- a:
			return
		default:
		}
		select {
		case <-g.out: // drop the older one
		default:
		}
	}
}

// Run takes part in the group until ctx is done: it follows the members,
// the inventory and the assignment, stands for leader when the lease is
// free, and leads while it holds it. On the way out a leader gives up its
// lease so that another member takes over at once.
func (g *Group) Run(ctx context.Context) {
	if g.cfg.Probe > 0 {
		if sub, err := g.answerPresence(); err != nil {
			g.log.Warn("poller group: not answering presence probes; a crash is noticed after the member timeout", "err", err)
		} else {
			defer func() { _ = sub.Unsubscribe() }()
		}
	}
	retry := backoff.New(100*time.Millisecond, 5*time.Second)
	for ctx.Err() == nil {
		err := g.run(ctx)
		if ctx.Err() != nil {
			break
		}
		if errors.Is(err, errReconnected) {
			// A leader goes on renewing its lease, if the peer still has it.
			g.log.Info("poller group: reconnected; reading the group again")
			retry.Reset()
			continue
		}
		g.setLeading(false, "lost the peer")
		g.log.Warn("poller group: watching the group failed; again shortly", "err", err)
		retry.Wait(ctx)
	}
	if g.Leading() && g.elector != nil {
		g.setLeading(false, whyStopping)
		dctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = g.elector.Resign(dctx)
	}
}

// groupView is what a member knows of the group.
type groupView struct {
	members    map[string]time.Time // poller -> when its last heartbeat was seen
	left       map[string]bool      // pollers whose heartbeat was removed (they left) since the view began
	devices    map[string]int       // device -> weight
	current    meshmon.Assignment
	pending    jetstream.KeyValueEntry // a newer assignment not read yet (the peer did not answer)
	swept      bool                    // this view stored an assignment and swept the unused shards
	deviceEvts uint64                  // inventory changes seen
	unchanged  decision                // the last decision that changed nothing
	draft      meshmon.Assignment      // an assignment not published yet (the time ran out), for draftFor
	draftFor   decision
	synced     int       // watches past their initial replay (assignment, members, devices)
	free       bool      // the lease lapsed or was given up
	holder     string    // who holds the lease, as last seen ("" when free)
	leaseRev   uint64    // the lease's revision, as last seen
	leaseSeen  bool      // the leader watch delivered a lease
	tried      time.Time // when this member last stood for leader
	start      time.Time // when the watches began
	reconnects uint64    // the connection's reconnections when they began
	presence   presence  // what probes found of the members' connections
}

// decision is what the leader decided an assignment from: the
// assignment's revision, the inventory changes seen and the live members.
// While they stay the same so does the decision (NextAssignment is a pure
// function of them but the time, which it uses only for what moves), so
// the leader does not compute it again every tick: with 100,000 devices it
// takes a third of a second of CPU.
type decision struct {
	rev, devices uint64
	live         []string
}

func sameDecision(a, b decision) bool {
	return a.rev == b.rev && a.devices == b.devices && slices.Equal(a.live, b.live)
}

// reconnected reports whether the connection to the peer was re-established
// since v's watches began.
func (g *Group) reconnected(v *groupView) bool {
	return g.js.Conn().Stats().Reconnects != v.reconnects
}

// errReconnected ends run when the connection to the peer was re-established.
var errReconnected = errors.New("reconnected to the peer")

// live returns the members that count as alive at now, sorted: the
// leader itself (it runs, so its poller does), every member heard from
// within timeout of now or of the newest heartbeat seen, and, during the
// first timeout of the view, every member of the current assignment that
// did not leave meanwhile (its heartbeat removed: SIGTERM): after
// a reconnection (or a restart of the peer) the heartbeats the peer holds
// may be old and new ones take a moment to arrive; the members must not
// lose their devices meanwhile. A member is out only when others were
// heard from since its last heartbeat by more than timeout: a leader that
// the machine starved, or whose watch lags, sees every heartbeat late, and
// took every member for dead at once (the group moved every device on a
// loaded machine, issue 23). A member whose connection a probe found
// closed since its last heartbeat is out at once (presence.go).
func (v *groupView) live(self string, now time.Time, timeout time.Duration) []string {
	var newest time.Time
	for _, seen := range v.members {
		if seen.After(newest) {
			newest = seen
		}
	}
	live := []string{self}
	for m, seen := range v.members {
		if m != self && !v.presence.isGone(m, seen) && (now.Sub(seen) <= timeout || newest.Sub(seen) <= timeout) {
			live = append(live, m)
		}
	}
	if now.Sub(v.start) <= timeout {
		for _, m := range v.current.Members {
			if !slices.Contains(live, m) && !v.left[m] && !v.presence.isGone(m, v.members[m]) {
				live = append(live, m)
			}
		}
	}
	slices.Sort(live)
	return live
}

func (g *Group) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := g.bind(ctx); err != nil {
		return err
	}
	w, err := g.watch(ctx)
	defer w.stop()
	if err != nil {
		return err
	}
	v := &groupView{members: map[string]time.Time{}, left: map[string]bool{}, devices: map[string]int{}, start: time.Now(),
		presence: newPresence()}
	// Watches that outlive a reconnection can miss what changed while the
	// peer was away (a restarted peer forgets them, and they notice only
	// after missing their idle heartbeats, seconds later): start them
	// again at once instead.
	v.reconnects = g.js.Conn().Stats().Reconnects
	tick := time.NewTicker(g.cfg.Tick)
	defer tick.Stop()
	for {
		if err := g.step(ctx, v, w, tick.C); err != nil {
			return err
		}
		// What else the watches hold is taken before leading: lead can
		// wait up to half a lease on a slow peer, and leading after every
		// single event let the watches fall seconds behind the peer (a
		// new leader at 30,000 devices saw the assignment it had stored
		// only 6.3 s after the kill, and meanwhile kept trying to store
		// it again; issue 23). Not for longer than an eighth of a lease,
		// so the lease is still renewed in time under a flood of events.
		for until := time.Now().Add(g.cfg.Lease / 8); ctx.Err() == nil && w.queued() > 0 && time.Now().Before(until); {
			if err := g.step(ctx, v, w, tick.C); err != nil {
				return err
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		if g.reconnected(v) {
			return errReconnected
		}
		g.lead(ctx, v)
	}
}

// step waits for one event of the group (a watch's update, a presence
// probe's result or a tick) and takes it into v. It returns an error when
// a watch closed, and nil, at once, when ctx is done.
func (g *Group) step(ctx context.Context, v *groupView, w groupWatches, tick <-chan time.Time) error {
	select {
	case <-ctx.Done():
	case e, ok := <-w.assignment.Updates():
		if !ok {
			return errors.New("assignment watch closed")
		}
		g.onAssignment(ctx, v, e)
	case e, ok := <-w.leader.Updates():
		if !ok {
			return errors.New("leader watch closed")
		}
		g.onLease(v, e)
	case e, ok := <-w.members.Updates():
		if !ok {
			return errors.New("member watch closed")
		}
		v.onMember(w.memberPrefix, e)
	case e, ok := <-w.devices.Updates():
		if !ok {
			return errors.New("device watch closed")
		}
		v.onDevice(e)
	case r := <-v.presence.results:
		g.onProbe(v, r)
	case <-tick:
		if v.pending != nil {
			g.onAssignment(ctx, v, v.pending)
		}
	}
	return nil
}

// groupWatches are the four watches a member follows the group with.
type groupWatches struct {
	assignment, leader, members, devices jetstream.KeyWatcher
	memberPrefix                         string // the key prefix of the site's members
}

// queued is how many updates the watches hold that were not taken yet.
func (w groupWatches) queued() int {
	return len(w.assignment.Updates()) + len(w.leader.Updates()) + len(w.members.Updates()) + len(w.devices.Updates())
}

// watch starts the watches of the assignment, the lease, the site's
// members and the inventory; stop the result even when it fails.
func (g *Group) watch(ctx context.Context) (groupWatches, error) {
	var w groupWatches
	var err error
	if w.assignment, err = g.group.Watch(ctx, GroupAssignmentKey(g.cfg.Site)); err != nil {
		return w, fmt.Errorf("watch assignment: %w", err)
	}
	if w.leader, err = g.elector.Observe(ctx); err != nil {
		return w, fmt.Errorf("watch leader: %w", err)
	}
	// The site's members only: a heartbeat under another site's key
	// (written here by a poller of that site) is no member of this group.
	w.memberPrefix = PollerKey(g.cfg.Site, "")
	if w.members, err = WatchWhole(ctx, g.js, g.pollers, w.memberPrefix+"*"); err != nil {
		return w, fmt.Errorf("watch members: %w", err)
	}
	if w.devices, err = WatchAllWhole(ctx, g.js, g.devices); err != nil {
		return w, fmt.Errorf("watch devices: %w", err)
	}
	return w, nil
}

func (w groupWatches) stop() {
	for _, kw := range []jetstream.KeyWatcher{w.assignment, w.leader, w.members, w.devices} {
		if kw != nil {
			kw.Stop()
		}
	}
}

// gone reports whether a watch entry is a delete or a purge.
func gone(e jetstream.KeyValueEntry) bool {
	return e.Operation() == jetstream.KeyValueDelete || e.Operation() == jetstream.KeyValuePurge
}

// assignmentReadWait bounds the read of an assignment's shards; one not
// read in time is read again at the next tick.
const assignmentReadWait = 5 * time.Second

// onAssignment reads a newer assignment (the shards this member lacks) and
// delivers it; nil marks the watch's initial values done.
func (g *Group) onAssignment(ctx context.Context, v *groupView, e jetstream.KeyValueEntry) {
	if e == nil {
		v.synced++
		return
	}
	v.pending = nil
	if gone(e) || e.Revision() <= v.current.Revision {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, assignmentReadWait)
	defer cancel()
	a, err := g.reader.read(rctx, e.Value())
	switch {
	case errors.Is(err, errShardGone):
		// Replaced while read: the watch brings the newer one.
		g.log.Debug("poller group: assignment replaced while read", "revision", e.Revision())
		return
	case err != nil && ctx.Err() == nil && rctx.Err() != nil:
		v.pending = e
		g.log.Warn("poller group: assignment not read in time; again shortly", "revision", e.Revision(), "err", err)
		return
	case err != nil:
		g.log.Warn("poller group: undecodable assignment", "revision", e.Revision(), "err", err)
		return
	}
	a.Revision = e.Revision()
	v.current = a
	g.deliver(a)
}

// onLease notes whether the lease is free, and steps down when another
// member holds it.
func (g *Group) onLease(v *groupView, e jetstream.KeyValueEntry) {
	if e == nil {
		v.free = !v.leaseSeen // no lease at all
		return
	}
	v.leaseSeen = true
	v.free = gone(e)
	v.holder, v.leaseRev = "", e.Revision()
	var l LeaderLease
	if !v.free && json.Unmarshal(e.Value(), &l) == nil {
		v.holder = l.Name
	}
	if mine := g.elector.Observed(e); !gone(e) && !mine && g.Leading() {
		// Someone else holds the lease now.
		g.setLeading(false, "another member holds the lease")
	}
}

// onMember notes a member's heartbeat (or its leaving).
func (v *groupView) onMember(prefix string, e jetstream.KeyValueEntry) {
	switch {
	case e == nil:
		v.synced++
	case gone(e):
		name := strings.TrimPrefix(e.Key(), prefix)
		delete(v.members, name)
		v.left[name] = true
	default:
		// The heartbeat's stamp, unless the peer's clock is ahead.
		seen := e.Created()
		if now := time.Now(); seen.After(now) {
			seen = now
		}
		name := strings.TrimPrefix(e.Key(), prefix)
		v.members[name] = seen
		delete(v.left, name)
	}
}

// onDevice notes a device's weight (or its removal).
func (v *groupView) onDevice(e jetstream.KeyValueEntry) {
	if e != nil {
		v.deviceEvts++
	}
	switch {
	case e == nil:
		v.synced++
	case gone(e):
		delete(v.devices, e.Key())
	default:
		if d, err := decodeDevice(e); err == nil {
			v.devices[e.Key()] = d.Weight()
		}
	}
}

// lead keeps or seeks the lease and, while this member leads, keeps the
// assignment equal to what the live members and the inventory call for
// (meshmon.NextAssignment).
func (g *Group) lead(ctx context.Context, v *groupView) {
	now := time.Now()
	g.probe(ctx, v, now)
	if g.Leading() && now.Sub(g.elector.RenewedAt()) > g.cfg.Lease*3/4 {
		// Past three quarters of the lease without a renewal (a starved
		// process, a slow peer): it stops acting unless a renewal within
		// what is left of the lease shows the lease is still its own. A
		// renewal expects the lease's revision, so it fails once the lease
		// lapsed or passed to another member.
		if left := g.elector.RenewedAt().Add(g.cfg.Lease).Sub(now); left <= 0 || !g.renewWithin(ctx, left) {
			g.setLeading(false, "could not renew the lease in time")
		}
	}
	switch {
	case g.Leading() && now.Sub(g.elector.RenewedAt()) >= g.cfg.Lease/4:
		g.renew(ctx)
	case !g.Leading() && (v.free || now.Sub(v.tried) > g.cfg.Lease):
		g.stand(ctx, v)
	case !g.Leading() && g.holderDead(v, now):
		g.supplant(ctx, v)
	}
	if !g.Leading() || v.synced < 3 || g.reconnected(v) {
		// (A lease won or renewed over a new connection: the view is
		// rebuilt before the next assignment.)
		return
	}
	live := v.live(g.cfg.Name, now, g.cfg.MemberTimeout)
	d := decision{rev: v.current.Revision, devices: v.deviceEvts, live: live}
	if d.rev != 0 && sameDecision(d, v.unchanged) {
		return
	}
	a, changed := v.draft, true
	if v.draft.Owners == nil || !sameDecision(d, v.draftFor) {
		// (The same decision again is the draft that was not published:
		// the same shards, of which those written are not written again.)
		a, changed = meshmon.NextAssignment(v.current, g.cfg.Name, live, v.devices, now)
	}
	v.draft = meshmon.Assignment{}
	if !changed {
		v.unchanged = d
		return
	}
	// The writes end half a lease after the last renewal was sent (or an
	// eighth of a lease from now, if later), so that the next renewal goes
	// out before three quarters have passed; what
	// was not written by then is written at the next try, with the same
	// shards (the draft). A slow peer (a starved machine) so spreads a
	// large assignment over several tries and keeps the lease, where a
	// leader that wrote on past it lost it and its successor started over
	// (issue 23: 7 to 12 s at 30,000 devices).
	deadline := g.elector.RenewedAt().Add(g.cfg.Lease / 2)
	if least := now.Add(g.cfg.Lease / 8); deadline.Before(least) {
		deadline = least // a renewal slower than that still leaves room
	}
	actx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	rev, n, gone, err := g.reader.publish(actx, v.current.Revision, a, g.js.Conn().MaxPayload())
	if errors.Is(err, jetstream.ErrKeyExists) {
		// A newer assignment than this member has seen: the watch brings it.
		g.log.Debug("poller group: publish assignment", "err", err)
		return
	}
	if err != nil {
		v.draft, v.draftFor = a, d
		g.log.Warn("poller group: assignment not published", "devices", len(a.Owners), "err", err)
		return
	}
	a.Revision = rev
	g.log.Info("poller group: assignment", "revision", rev, "members", len(live), "devices", len(a.Owners),
		"moved", meshmon.Moved(v.current, a), "bytes", n)
	v.current = a
	g.deliver(a)
	// Removing the shards that no longer serve waits for no one: it runs
	// beside the leader's next renewals and writes.
	sweep := !v.swept
	v.swept = true
	held := g.reader.holding()
	go func() {
		cctx, cancel := context.WithTimeout(ctx, shardCleanupWait)
		defer cancel()
		g.reader.removeShards(cctx, gone)
		if sweep {
			g.reader.removeShards(cctx, g.reader.sweep(cctx, rev, held))
		}
	}()
}

// shardCleanupWait bounds the removal of the shards that an assignment's
// leader no longer needs; what is left is swept by the next view's first
// assignment.
const shardCleanupWait = 30 * time.Second

// stand tries to take the lease.
func (g *Group) stand(ctx context.Context, v *groupView) {
	v.tried = time.Now()
	b, _ := json.Marshal(LeaderLease{Name: g.cfg.Name, Instance: g.cfg.Instance, Since: time.Now().UTC()})
	actx, cancel := context.WithTimeout(ctx, g.cfg.Lease/2)
	defer cancel()
	if won, _ := g.elector.Campaign(actx, b); !won {
		return // held by another member, or the peer is away
	}
	v.free = false
	g.setLeading(true, "")
}

// holderDead reports whether the lease's holder is another member whose
// heartbeats say it is dead (by the same rule as the assignment's, see
// groupView.live), once this member's view of the heartbeats is complete
// and a member timeout old: the others need not wait for its lease to
// lapse (issue 23: the lease added up to a second to a leader's failover).
// A holder whose connection a probe found closed (presence.go) is dead at
// once, however young the view.
func (g *Group) holderDead(v *groupView, now time.Time) bool {
	if v.free || v.holder == "" || v.holder == g.cfg.Name || v.synced < 3 || now.Sub(v.tried) < g.cfg.Tick {
		return false
	}
	seen, heard := v.members[v.holder]
	if heard && v.presence.isGone(v.holder, seen) {
		return true
	}
	if now.Sub(v.start) <= g.cfg.MemberTimeout {
		return false
	}
	if !heard {
		return false // a holder without heartbeats (or whose heartbeat expired): its lease tells
	}
	return !slices.Contains(v.live(g.cfg.Name, now, g.cfg.MemberTimeout), v.holder)
}

// supplant takes the lease from a holder judged dead (holderDead).
func (g *Group) supplant(ctx context.Context, v *groupView) {
	v.tried = time.Now()
	b, _ := json.Marshal(LeaderLease{Name: g.cfg.Name, Instance: g.cfg.Instance, Since: time.Now().UTC()})
	actx, cancel := context.WithTimeout(ctx, g.cfg.Lease/2)
	defer cancel()
	if won, _ := g.elector.Supplant(actx, b, v.leaseRev); !won {
		return // renewed or taken since, or the peer is away
	}
	g.log.Warn("poller group: took the lease from a leader without heartbeats", "leader", v.holder, "member_timeout", g.cfg.MemberTimeout)
	v.holder = g.cfg.Name
	g.setLeading(true, "")
}

// renew extends the lease this member holds; a renewal that times out is
// tried again next tick, until three quarters of the lease have passed.
func (g *Group) renew(ctx context.Context) { g.renewWithin(ctx, g.cfg.Lease/4) }

// renewWithin renews the lease, waiting at most wait for the answer, and
// reports whether it did.
func (g *Group) renewWithin(ctx context.Context, wait time.Duration) bool {
	actx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	err := g.elector.Renew(actx)
	if errors.Is(err, ErrLeaseLost) {
		g.setLeading(false, err.Error())
	}
	return err == nil
}

// GroupMember is one member of a poller group as status shows it.
type GroupMember struct {
	Name     string        `json:"name"`
	LastSeen time.Time     `json:"last_seen"`
	Age      time.Duration `json:"since_heartbeat_ns"`
	Devices  int           `json:"devices"` // assigned to it
	Leader   bool          `json:"leader"`
	// InGroup: the assignment counts it as a live member.
	InGroup bool `json:"in_group"`
}

// GroupStatus is a site's poller group as status shows it.
type GroupStatus struct {
	Leader     string        `json:"leader,omitempty"`
	Revision   uint64        `json:"assignment_revision,omitempty"`
	Assigned   int           `json:"devices_assigned"`
	Unassigned int           `json:"devices_unassigned"`
	Members    []GroupMember `json:"members"`
}

// ReadGroupStatus reads the group of the site that js reaches (the site
// whose JetStream domain it is), given the live pollers and the site's
// devices. Pollers of other sites (a heartbeat a poller of another site
// wrote here) are no members of the group and are left out.
func ReadGroupStatus(ctx context.Context, js jetstream.JetStream, pollers []meshmon.PollerInfo, devices []meshmon.Device, now time.Time) (GroupStatus, error) {
	info, err := js.AccountInfo(ctx)
	if err != nil {
		return GroupStatus{}, fmt.Errorf("poller group: %w", err)
	}
	return ReadSiteGroupStatus(ctx, js, info.Domain, pollers, devices, now)
}

// ReadSiteGroupStatus reads the group of site at the peer that js reaches,
// as ReadGroupStatus does.
func ReadSiteGroupStatus(ctx context.Context, js jetstream.JetStream, site string, pollers []meshmon.PollerInfo, devices []meshmon.Device, now time.Time) (GroupStatus, error) {
	var st GroupStatus
	kv, err := js.KeyValue(ctx, GroupBucket)
	if err != nil {
		return st, fmt.Errorf("poller group: %w", err)
	}
	if e, err := kv.Get(ctx, GroupLeaderKey(site)); err == nil {
		var l LeaderLease
		if json.Unmarshal(e.Value(), &l) == nil {
			st.Leader = l.Name
		}
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return st, fmt.Errorf("poller group leader: %w", err)
	}
	a, err := ReadAssignment(ctx, kv, site)
	if err != nil {
		return st, err
	}
	st.Revision = a.Revision
	count := map[string]int{}
	for _, p := range a.Owners {
		count[p]++
	}
	for _, d := range devices {
		if p, ok := a.Owners[d.Name]; ok && slices.Contains(a.Members, p) {
			st.Assigned++
		} else {
			st.Unassigned++
		}
	}
	st.Members = []GroupMember{}
	for _, p := range pollers {
		if p.Site != site {
			continue
		}
		st.Members = append(st.Members, GroupMember{Name: p.Name, LastSeen: p.LastSeen, Age: now.Sub(p.LastSeen), Devices: count[p.Name], Leader: p.Name == st.Leader, InGroup: slices.Contains(a.Members, p.Name)})
	}
	return st, nil
}
