package poller

import (
	"cmp"
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/storage"
)

// Publisher sends spooled messages to the peer. PublishBatch publishes msgs
// in order and returns how many of the leading messages are stored; a
// message the peer refuses for good is reported with an error wrapping
// meshmon.ErrRejected. It is called from one goroutine at a time.
type Publisher interface {
	PublishBatch(ctx context.Context, msgs []meshmon.Message) (int, error)
}

// Inventory is the site's device list. Watch replays the current devices,
// marks the end of the replay with a Synced change, then follows changes
// until ctx is done or the watch fails, when it closes the channel. It may be
// called again after a failure.
type Inventory interface {
	Watch(ctx context.Context) (<-chan meshmon.InventoryChange, error)
}

// Registry records that a poller is alive. Heartbeat is called from one
// goroutine at a time.
type Registry interface {
	Heartbeat(ctx context.Context, info meshmon.PollerInfo) error
}

// Stats are a poller's running totals.
type Stats struct {
	Devices        int
	Spooled        int    // messages in the spool, not yet acknowledged by the peer
	SpoolBytes     int64  // bytes in the spool
	Published      uint64 // messages acknowledged by the peer
	Rejected       uint64 // messages the peer refused for good (dropped)
	Corrupt        uint64 // spool entries that could not be decoded (dropped)
	Dropped        uint64 // observations lost because the spool could not take them
	Polls          uint64
	TrapsIn        uint64        // traps and informs received
	TrapsDropped   uint64        // lost because the trap queue was full
	TrapsCommitted uint64        // spooled as events (so on their way to the peer)
	Superseded     uint64        // spooled observations dropped because another group member polled the device then
	Late           uint64        // polls that started more than max(interval/10, 1s) after they were due
	LagMax         time.Duration // the latest any poll started after it was due
	Connected      bool          // the last publish attempt succeeded
	// TrapsInvalid counts packets at the trap port dropped as invalid, by
	// reason (see TrapListener.Invalid); nil without a listener.
	TrapsInvalid map[string]uint64
}

// Poller schedules probes for the devices of one site and publishes what
// they observe. Create it with New and run it with Run.
type Poller struct {
	cfg   Config
	log   *slog.Logger
	store *storage.DB
	pub   Publisher
	inv   Inventory
	reg   Registry
	icmp  *ICMPProber
	// icmpDenied is set at start when this process may not ping: ICMP
	// checks then report unknown and never raise node_down.
	icmpDenied error
	snmpSet    snmpSettings // the devices' SNMP settings, one copy of each
	source     string
	start      time.Time

	// mu guards devices, byAddr and the scheduling fields of every target.
	// Lock order: mu before sched.mu.
	mu      sync.Mutex
	devices map[string]*target
	busy    map[string]bool   // device names a worker is polling now
	nextGen uint64            // last target generation handed out
	byAddr  map[string]string // device address -> name, for traps
	sched   *scheduler

	// The poller's group, when it has one (see JoinGroup), and what it
	// knows of it.
	group       Group
	gmu         sync.Mutex
	gs          groupState
	assignRev   atomic.Uint64 // the assignment revision polls are made under
	supersededN atomic.Uint64 // spooled observations dropped: another member polled the device then

	// When the last heartbeat was stored and the assignment last read from
	// the peer (Unix nanoseconds): see mayBeStale.
	heartbeatOK, refreshedAt atomic.Int64
	hung                     atomic.Bool // a heartbeat came more than the member timeout after the one before

	wake  chan struct{} // something was spooled
	traps chan queuedTrap
	ready chan struct{}
	trap  *TrapListener

	// The workers running (dispatch starts them, up to Config.Workers),
	// and how long one waits for a poll before it ends.
	workers    atomic.Int64
	workerIdle time.Duration
	// The polls' records waiting for the spool's commit apart from their
	// workers (run): a slot each in recording, at most recordsInFlight.
	recording chan struct{}
	recorders sync.WaitGroup
	// The neighbour readings running: a slot each, at most
	// neighborReadings (takeNeighborSlot).
	neighborSlots chan struct{}
	// beforeRecord, when set (tests), runs before each poll's record.
	beforeRecord func(*observation)

	polls, published, rejected, corrupt, dropped, trapsIn, trapsDropped, trapsCommitted, late atomic.Uint64
	lagMax, lastDropLog                                                                       atomic.Int64
	connected                                                                                 atomic.Bool

	// What only the metrics read (metrics.go): polls' durations, publish
	// errors by kind, leader changes seen, devices moved in and out.
	pollSeconds                                                 prometheus.Histogram
	pubUnreachable, pubDiskFull, leaderChanges, moveIn, moveOut atomic.Uint64
}

// target is one scheduled device. Its probe state is touched only by the
// worker that polls it; the device is never polled twice at once.
type target struct {
	// dev is shared with the group's copy of the inventory (groupState),
	// and never changed through either: a changed device is a new one.
	dev      *meshmon.Device
	gen      uint64 // unique per target, so stale schedule entries are ignored
	replaced bool   // a newer target of the same name took over
	deleted  bool   // the device left the inventory

	snmp *SNMPProber
	// loaded: uptime was read from the store (at the first poll). The
	// check states and counters stay in the store (see readState).
	loaded   bool
	uptime   uptimeState
	uptimeOK bool
	lldpAt   time.Time // when its neighbours were last read; zero: not yet
	// check: taken over from another member and not polled here yet; its
	// first poll reads the system group only, the next one (at its own
	// slot) the interfaces too.
	check bool

	// A poll-now (a task) holds the device busy: the scheduled poll the
	// dispatcher skips meanwhile is kept in missed and polled after it.
	pollingNow bool
	missed     *entry
}

// New returns a poller. store is its own bbolt file; pub, inv and reg talk to
// the site peer (reg may be nil).
func New(cfg Config, log *slog.Logger, store *storage.DB, pub Publisher, inv Inventory, reg Registry) (*Poller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Poller{
		cfg:     cfg,
		log:     log.With("poller", cfg.Name),
		store:   store,
		pub:     pub,
		inv:     inv,
		reg:     reg,
		icmp:    NewICMPProber(cfg.ICMPMode, cfg.ICMPCount, cfg.ICMPInterval),
		source:  fmt.Sprintf("/meshmon/%s/%s/%s", cfg.Tenant, cfg.Site, cfg.Name),
		devices: make(map[string]*target),
		busy:    make(map[string]bool),
		byAddr:  make(map[string]string),
		sched:   newScheduler(),
		gs:      groupState{inventory: make(map[string]*meshmon.Device), byAddr: make(map[string]string)},
		wake:    make(chan struct{}, 1),
		traps:   make(chan queuedTrap, cfg.TrapQueue),
		ready:   make(chan struct{}),

		pollSeconds: newPollHistogram(),
		workerIdle:  workerIdle,
		recording:   make(chan struct{}, recordsInFlight(cfg.Workers)),

		neighborSlots: make(chan struct{}, neighborReadings(cfg.Workers)),
	}
	return p, nil
}

// Ready is closed once Run has loaded the cached devices and, if configured,
// the trap listener is listening.
func (p *Poller) Ready() <-chan struct{} { return p.ready }

// trapListener is the trap listener once Run has made it, or nil.
func (p *Poller) trapListener() *TrapListener {
	select {
	case <-p.ready:
		return p.trap
	default:
		return nil
	}
}

// TrapEngineID is the trap listener's SNMPv3 engine ID (the one senders of
// informs discover), or "" when it takes no v3.
func (p *Poller) TrapEngineID() string {
	if l := p.trapListener(); l != nil {
		return l.EngineID()
	}
	return ""
}

// TrapAddr is the address the trap listener is bound to, or nil.
func (p *Poller) TrapAddr() net.Addr {
	select {
	case <-p.ready:
	default:
		return nil
	}
	if p.trap == nil {
		return nil
	}
	return p.trap.Addr()
}

// Stats returns the poller's running totals.
func (p *Poller) Stats() Stats {
	p.mu.Lock()
	n := len(p.devices)
	p.mu.Unlock()
	spooled, bytes, _ := p.store.SpoolStats()
	var invalid map[string]uint64
	if l := p.trapListener(); l != nil {
		invalid = l.Invalid()
	}
	return Stats{
		Devices: n, Spooled: spooled, SpoolBytes: bytes,
		Published: p.published.Load(), Rejected: p.rejected.Load(), Corrupt: p.corrupt.Load(), Dropped: p.dropped.Load(),
		Polls: p.polls.Load(), TrapsIn: p.trapsIn.Load(), TrapsDropped: p.trapsDropped.Load(), TrapsCommitted: p.trapsCommitted.Load(),
		Superseded: p.supersededN.Load(), Late: p.late.Load(), LagMax: time.Duration(p.lagMax.Load()), Connected: p.connected.Load(),
		TrapsInvalid: invalid,
	}
}

// Run polls until ctx is done. It starts from the device cache in the local
// store, so it works while the peer is away, and follows the inventory when
// the peer is there. It returns an error only if it cannot start.
func (p *Poller) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p.start = p.cfg.Now()

	if err := p.icmp.Check(); err != nil {
		p.icmpDenied = err
		p.log.Warn("this process may not send ICMP echo requests; ICMP checks report unknown and raise no node_down until the poller is restarted with permission (root, CAP_NET_RAW, or a net.ipv4.ping_group_range that includes its group)",
			"mode", p.cfg.ICMPMode, "err", err)
	}
	cached, err := p.store.Devices()
	if err != nil {
		// The inventory replays every device when the peer answers.
		p.log.Warn("device cache unreadable; waiting for the inventory", "err", err)
	}
	for _, d := range cached {
		p.upsert(&d, false, true, false)
	}
	if p.cfg.TrapListen != "" {
		p.trap = NewTrapListener(p.cfg.TrapListen, p.log, p.onTrap)
		if len(p.cfg.TrapUsers.Users) > 0 {
			if err := p.trap.SetV3(p.cfg.TrapUsers, DefaultTrapEngineID(p.cfg.Tenant, p.cfg.Site, p.cfg.Name), p.cfg.Now); err != nil {
				return fmt.Errorf("start trap listener: %w", err)
			}
			p.log.Info("snmp trap listener accepts SNMPv3", "users", len(p.cfg.TrapUsers.Users), "engine_id", hex.EncodeToString([]byte(p.trap.EngineID())))
		}
		if err := p.trap.Start(ctx); err != nil {
			return fmt.Errorf("start trap listener: %w", err)
		}
		defer p.trap.Close()
	}
	spooled, _, _ := p.store.SpoolStats()
	p.log.Info("poller started", "devices", len(cached), "spooled", spooled, "site", p.cfg.Site, "tenant", p.cfg.Tenant, "traps", p.cfg.TrapListen)

	var wg sync.WaitGroup
	jobs := make(chan job)
	goFn := func(f func(context.Context)) {
		wg.Add(1)
		go func() { defer wg.Done(); f(ctx) }()
	}
	goFn(func(ctx context.Context) {
		p.dispatch(ctx, jobs, func(first job) { goFn(func(ctx context.Context) { p.work(ctx, jobs, first) }) })
	})
	goFn(p.drain)
	goFn(p.handleTraps)
	if p.inv != nil {
		goFn(p.followInventory)
	}
	if p.group != nil {
		goFn(p.followGroup)
	}
	if p.reg != nil {
		goFn(p.heartbeat)
	}
	close(p.ready)
	<-ctx.Done()
	wg.Wait()
	p.recorders.Wait()

	p.mu.Lock()
	defer p.mu.Unlock()
	for _, t := range p.devices {
		if t.snmp != nil {
			t.snmp.Close()
		}
	}
	p.log.Info("poller stopped")
	return nil
}

// upsertAll upserts the devices ds as reconcile wants them: a device
// already scheduled is cached when it changed, a new one only unless
// cached (the caller stored them in one transaction); those in moved were
// taken over from another member. The fsynced cache write happens
// outside p.mu, so workers and the dispatcher never wait on the disk;
// changes of one device come from one goroutine, in order. It takes the
// lock twice for the lot and caches in one transaction: device by device,
// scheduling a take-over of 5,000 devices beside the 10,000 kept took
// 194-431 ms at 30,000 devices with the pollers busy (issue 23), while
// its first polls waited.
func (p *Poller) upsertAll(ds []*meshmon.Device, cached, spread bool, moved map[string]bool) {
	type change struct {
		d     *meshmon.Device
		known bool
	}
	var changes []change
	p.mu.Lock()
	for _, d := range ds {
		t, ok := p.devices[d.Name]
		if !ok || !sameDevice(*t.dev, *d) {
			changes = append(changes, change{d, ok})
		}
	}
	p.mu.Unlock()
	var ready []*meshmon.Device
	var store []meshmon.Device
	for _, c := range changes {
		d, ok := p.checked(c.d)
		if !ok {
			continue
		}
		if c.known || !cached {
			store = append(store, *d)
		}
		ready = append(ready, d)
	}
	if err := p.store.PutDevices(store); err != nil {
		p.log.Warn("cache devices", "devices", len(store), "err", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.cfg.Now()
	es := make([]entry, 0, len(ready))
	for _, d := range ready {
		es = append(es, p.installLocked(d, now, spread, moved[d.Name]))
	}
	p.sched.addAll(es)
}

// polledInSlot reports whether the member that polled name before would
// have polled it in the slot of now already: its offset in the slot has
// passed. A take-over checks such a device in the same slot, so its
// sample has the message id of that poll's and the stream drops it as a
// duplicate; and an atomic batch that holds one duplicate is refused
// whole, and sent again message by message, an fsync each. With those
// devices mixed among the others almost every batch of a take-over was
// refused: at 30,000 devices the survivors' drains sent 256 messages in
// 0.2 to 0.7 s while their spools grew to thousands (issue 23). Checked
// after the others, they come last in the spool, and the others' new
// samples go in whole batches (the publisher then sends that spell of
// duplicates message by message, bus.Publisher.PublishBatch).
func polledInSlot(name string, interval time.Duration, now time.Time) bool {
	return interval > 0 && now.Sub(now.Truncate(interval)) > offset(name, interval)
}

// upsert adds or changes a device (upsertAll of d alone; with cache, a
// new device is cached too). A device that changed is polled at once;
// with spread, its first poll waits for its offset in the interval, so a
// poller starting with thousands of devices does not poll them all at the
// same instant. A device movedIn from another member of the group reads
// its neighbours later (see installLocked). A device that breaks the
// inventory's rules is skipped with a warning (it can only come from a
// writer that bypassed validation).
func (p *Poller) upsert(d *meshmon.Device, cache, spread, movedIn bool) {
	var moved map[string]bool
	if movedIn {
		moved = map[string]bool{d.Name: true}
	}
	p.upsertAll([]*meshmon.Device{d}, !cache, spread, moved)
}

// checked is d as the poller keeps it (its SNMP settings shared with the
// other devices that have the same, no revision), and whether it is valid;
// an invalid one is logged.
func (p *Poller) checked(d *meshmon.Device) (*meshmon.Device, bool) {
	if snmp := p.snmpSet.intern(d.SNMP); d.Revision != 0 || snmp != d.SNMP {
		c := *d
		c.Revision, c.SNMP = 0, snmp
		d = &c
	}
	if err := d.Validate(); err != nil {
		p.log.Warn("ignoring an invalid device from the inventory", "device", d.Name, "err", err)
		return nil, false
	}
	return d, true
}

// installLocked makes d, checked, the device's target and returns its
// first poll for the scheduler, at now (unless spread) in the slot of now.
// p.mu is held.
func (p *Poller) installLocked(d *meshmon.Device, now time.Time, spread, movedIn bool) entry {
	t, ok := p.devices[d.Name]
	p.nextGen++
	nt := &target{dev: d, gen: p.nextGen}
	if ok {
		t.replaced = true
		if !p.busy[d.Name] {
			// Same device, new settings: keep what was learnt about it.
			nt.uptime, nt.uptimeOK, nt.loaded = t.uptime, t.uptimeOK, t.loaded
			if t.snmp != nil {
				t.snmp.Close()
			}
		}
		if p.byAddr[t.dev.Address] == d.Name {
			delete(p.byAddr, t.dev.Address)
		}
	}
	p.devices[d.Name] = nt
	p.byAddr[d.Address] = d.Name
	if every := p.cfg.TopologyInterval; movedIn && every > 0 && nt.lldpAt.IsZero() {
		// Taken over from another member, which read its neighbours
		// within the interval: the first reading here comes at the
		// device's own offset in the interval, not with its first poll,
		// since a failover polls a third of a site at once and each
		// reading costs about a tenth of a second (issue 23).
		nt.lldpAt = now.Add(-every + offset(d.Name, every))
	}
	// Its first poll here only checks it (reachability and sysUpTime):
	// reading the interface tables of a third of a site at once took
	// seconds on two cores (issue 23). The full poll follows at the
	// device's own offset in its next slot, as it would have at the
	// member that left.
	nt.check = movedIn && !spread
	slot, at := now, now
	switch {
	case spread:
		slot, at = firstRun(d.Name, d.Interval.D(), now)
	case nt.check && polledInSlot(d.Name, d.Interval.D(), now):
		at = now.Add(time.Microsecond) // after the others: see polledInSlot
	}
	// If the device is being polled right now the dispatcher skips this
	// entry and the worker schedules the new target when it is done.
	return entry{at: at, slot: slot, name: d.Name, gen: nt.gen}
}

// remove stops polling a device and forgets its state. If a worker is
// polling it, that worker forgets the state when it is done, so the poll
// cannot write it back. The store is written outside p.mu; while it is, the
// name stays busy so no new target of that name is polled before its old
// state is gone.
func (p *Poller) remove(name string) {
	p.mu.Lock()
	t, ok := p.devices[name]
	if !ok {
		p.mu.Unlock()
		return
	}
	t.deleted = true
	delete(p.devices, name)
	if p.byAddr[t.dev.Address] == name {
		delete(p.byAddr, t.dev.Address)
	}
	polled := p.busy[name]
	p.busy[name] = true
	p.mu.Unlock()

	if err := p.store.DeleteDevice(name); err != nil {
		p.log.Warn("uncache device", "device", name, "err", err)
	}
	p.log.Info("device removed", "device", name)
	if polled {
		return // the worker forgets and releases the name
	}
	if t.snmp != nil {
		t.snmp.Close()
	}
	p.forget(name)
	p.mu.Lock()
	p.release(name)
	p.mu.Unlock()
}

// forget deletes a device's check states. The caller holds the name busy
// and not p.mu.
func (p *Poller) forget(name string) {
	if err := p.store.DeleteStates(name); err != nil {
		p.log.Warn("forget device state", "device", name, "err", err)
	}
}

// release ends a busy spell of name and polls at once the target that
// took over while it was busy, if any (the dispatcher skipped it). p.mu is
// held.
func (p *Poller) release(name string) {
	delete(p.busy, name)
	if cur, ok := p.devices[name]; ok {
		now := p.cfg.Now()
		p.sched.add(name, cur.gen, now, now)
	}
}

// sameDevice reports whether a and b poll the same way: every setting
// equal, whatever their revisions (TestSameDeviceSeesEveryField). It
// runs for every kept device of every assignment, so it compares fields
// rather than encodings.
func sameDevice(a, b meshmon.Device) bool {
	same := a.Name == b.Name && a.Address == b.Address && slices.Equal(a.Checks, b.Checks) &&
		a.Interval == b.Interval && a.Timeout == b.Timeout && a.Retries == b.Retries && a.Parent == b.Parent
	return same && (a.SNMP == b.SNMP || a.SNMP != nil && b.SNMP != nil && *a.SNMP == *b.SNMP)
}

// deviceNames returns the names of the scheduled devices.
func (p *Poller) deviceNames() map[string]bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	names := make(map[string]bool, len(p.devices))
	for n := range p.devices {
		names[n] = true
	}
	return names
}

// commit spools messages and state updates in one transaction and wakes the
// drainer. On failure the observations are counted as dropped.
func (p *Poller) commit(msgs []meshmon.Message, states []storage.StateUpdate) error {
	if len(msgs) == 0 && len(states) == 0 {
		return nil
	}
	// Events before samples (by Stream): the publisher sends each run of messages for
	// one stream as one atomic batch, so fewer, longer runs are faster. The
	// order within each stream is kept.
	slices.SortStableFunc(msgs, func(a, b meshmon.Message) int {
		return cmp.Compare(a.Stream, b.Stream)
	})
	if err := p.store.Commit(msgs, states); err != nil {
		total := p.dropped.Add(uint64(len(msgs)))
		// One line per ten seconds at most: a full disk must not also flood the log.
		now := p.cfg.Now().UnixNano()
		if last := p.lastDropLog.Load(); now-last > int64(10*time.Second) && p.lastDropLog.CompareAndSwap(last, now) {
			p.log.Error("cannot spool observations; they are lost until there is room (the check states are kept, so changes are reported again)",
				"messages", len(msgs), "dropped_total", total, "err", err)
		}
		return err
	}
	select {
	case p.wake <- struct{}{}:
	default:
	}
	return nil
}
