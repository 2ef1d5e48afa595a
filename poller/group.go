package poller

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"time"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/storage"
)

// Group tells a poller which of its site's devices are its own: the
// assignments of the site's poller group. A poller without one polls every
// device of the site. Each method the poller uses is on its own small
// interface below.
type Group interface {
	AssignmentSource
	AssignmentReader
	StateReader
}

// AssignmentSource delivers the group's assignment each time it changes.
type AssignmentSource interface {
	Assignments() <-chan meshmon.Assignment
}

// AssignmentReader reads the assignment from the peer now: a poller back
// from a cut asks before it publishes what it spooled meanwhile.
type AssignmentReader interface {
	Current(ctx context.Context) (meshmon.Assignment, error)
}

// StateReader tells what the site's events last said of the checks of
// devices (device -> check -> the kind and state of the last event of
// the check's state), in one read: a poller that takes devices over
// starts from there. A device the events say nothing of may be absent.
type StateReader interface {
	LastStates(ctx context.Context, devices []string) (map[string]map[string]meshmon.LastState, error)
}

// takeOverWait bounds the read of the last states of the devices an
// assignment moves to the poller; without an answer they start from no
// state.
const takeOverWait = 2 * time.Second

// JoinGroup makes the poller poll only the devices its group assigns to
// it. Call it before Run.
func (p *Poller) JoinGroup(g Group) { p.group = g }

// groupState is what a poller in a group knows of the inventory and of its
// share; guarded by Poller.gmu.
type groupState struct {
	inventory map[string]*meshmon.Device // every device of the site, without its Revision; shared with the targets
	byAddr    map[string]string          // address -> name, of inventory
	synced    bool                       // the inventory was read in full
	owned     map[string]bool            // nil until the first assignment
	latest    meshmon.Assignment         // the newest assignment seen
	// applied is when each of the last assignments this poller applied
	// was made (revision -> its Time), for superseded.
	applied map[uint64]time.Time
}

// appliedKept is how many of the last assignments applied a poller
// remembers the time of.
const appliedKept = 256

// followGroup applies every assignment of the group until ctx is done.
func (p *Poller) followGroup(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case a := <-p.group.Assignments():
			p.assign(ctx, a)
		}
	}
}

// assign applies a, unless the poller knows a newer assignment; ctx bounds
// the read of the states of the devices it takes over.
func (p *Poller) assign(ctx context.Context, a meshmon.Assignment) {
	owned := a.Owned(p.cfg.Name)
	p.gmu.Lock()
	if a.Revision <= p.gs.latest.Revision {
		p.gmu.Unlock()
		return
	}
	first := p.gs.owned == nil
	if prev := p.gs.latest.Leader; prev != "" && a.Leader != prev {
		p.leaderChanges.Add(1)
	}
	p.gs.owned = owned
	p.gs.latest = a
	p.gs.remember(a)
	p.gmu.Unlock()
	p.assignRev.Store(a.Revision)
	p.log.Info("assignment", "revision", a.Revision, "leader", a.Leader, "devices", len(owned), "members", len(a.Members))
	// The first assignment of a start spreads its polls over the
	// interval; a device taken over later is polled at once.
	p.reconcile(ctx, first)
}

// refreshAssignment reads the group's assignment from the peer and applies
// it; the drainer calls it when the peer is back, before it publishes.
func (p *Poller) refreshAssignment(ctx context.Context) error {
	actx, cancel := context.WithTimeout(ctx, p.cfg.PublishTimeout)
	defer cancel()
	a, err := p.group.Current(actx)
	if err != nil {
		return err
	}
	p.refreshedAt.Store(time.Now().UnixNano())
	p.hung.Store(false)
	if a.Revision > 0 {
		p.assign(ctx, a)
	}
	return nil
}

// mayBeStale reports whether the group may have given this poller's
// devices to others without its knowing: no heartbeat of its own was
// stored for longer than the member timeout (the process was stopped or
// starved, or the peer did not answer), now or before the last one (the
// heartbeat may run first when a stopped process resumes), and it has not
// read the assignment since. Its connection may have stayed up
// throughout, so nothing else tells it: the watch delivers the newer
// assignment only after the polls it made meanwhile were spooled.
func (p *Poller) mayBeStale() bool {
	now := time.Now().UnixNano()
	limit := p.cfg.MemberTimeout.Nanoseconds()
	return p.hung.Load() || now-p.heartbeatOK.Load() > limit && now-p.refreshedAt.Load() > limit
}

// groupChange records an inventory change in group mode and applies it to
// what the poller polls.
func (p *Poller) groupChange(c meshmon.InventoryChange, seen map[string]bool) {
	var dev *meshmon.Device // the device changed, shared by the inventory and its target
	p.gmu.Lock()
	switch {
	case c.Synced:
		for name := range p.gs.inventory {
			if !seen[name] {
				p.gs.forget(name)
			}
		}
		p.gs.synced = true
		p.gmu.Unlock()
		p.reconcile(context.Background(), true) // spread: it takes nothing over
		return
	case c.Deleted:
		p.gs.forget(c.Name)
	default:
		d := c.Device
		d.Revision, d.SNMP = 0, p.snmpSet.intern(d.SNMP)
		dev = &d
		p.gs.forget(d.Name)
		p.gs.inventory[d.Name] = dev
		p.gs.byAddr[d.Address] = d.Name
	}
	synced, owned := p.gs.synced, p.gs.owned[c.Name]
	p.gmu.Unlock()
	switch {
	case c.Deleted:
		p.remove(c.Name)
	case synced && owned:
		p.upsert(dev, true, false, false)
	}
}

// reconcile makes the polled devices those of the inventory that the
// group gives this poller. Until both are known it leaves the cached
// devices as they are, so a poller that starts without its peer polls what
// it polled before. Unless spread, the devices it gains are taken over
// (their states read in one read within ctx) and polled at once.
func (p *Poller) reconcile(ctx context.Context, spread bool) {
	p.gmu.Lock()
	if !p.gs.synced || p.gs.owned == nil {
		p.gmu.Unlock()
		return
	}
	want := make([]*meshmon.Device, 0, len(p.gs.owned))
	keep := make(map[string]bool, len(p.gs.owned))
	for name := range p.gs.owned {
		if d, ok := p.gs.inventory[name]; ok {
			want = append(want, d)
			keep[name] = true
		}
	}
	p.gmu.Unlock()
	have := p.deviceNames()
	var lost []string
	for name := range have {
		if !keep[name] {
			lost = append(lost, name)
		}
	}
	p.removeAll(lost)
	p.countMovedOut(lost)
	// The devices gained: their states read in one read, cached in one
	// transaction, then polled (at once unless spread). One read or one
	// fsync per device made a failover of hundreds of devices take
	// seconds (issue 23).
	var gained []meshmon.Device
	var names []string
	for _, d := range want {
		if have[d.Name] {
			continue
		}
		if d.Validate() == nil {
			gained = append(gained, *d)
			names = append(names, d.Name)
		}
	}
	if !spread {
		p.takeOver(ctx, names)
		p.moveIn.Add(uint64(len(names)))
	}
	start := time.Now()
	moved := map[string]bool{}
	if !spread {
		moved = p.movedIn(names)
	}
	// The devices gained are cached (for a restart without the peer)
	// once their first polls are due, not before: the cache's fsynced
	// write of 5,000 devices took 30 to 275 ms of a take-over at 30,000
	// devices (issue 23). A device leaves only by this goroutine, so the
	// cache is written before any removal of it.
	p.upsertAll(want, true, spread, moved)
	schedule := time.Since(start)
	if err := p.store.PutDevices(gained); err != nil {
		p.log.Warn("cache devices", "devices", len(gained), "err", err)
	}
	if !spread && len(names) > 0 {
		// What a take-over spends between reading the states and the
		// first polls (a failover at 30,000 devices saw its first sample
		// 5 s after "took devices over" once, in the pollers' first
		// minute; issue 23), and then in caching the devices.
		p.log.Info("devices taken over are due", "devices", len(names), "schedule", schedule.Round(time.Millisecond),
			"cache", (time.Since(start) - schedule).Round(time.Millisecond))
	}
}

// movedIn are the devices of names that the newest assignment moved to
// this poller from another member (a device new to the group has none
// before).
func (p *Poller) movedIn(names []string) map[string]bool {
	p.gmu.Lock()
	defer p.gmu.Unlock()
	out := map[string]bool{}
	for _, n := range names {
		if prev := p.gs.latest.Prev[n].Poller; prev != "" && prev != p.cfg.Name {
			out[n] = true
		}
	}
	return out
}

// countMovedOut counts the devices of lost that are still in the
// inventory: the group moved them to another member (the rest left the
// inventory).
func (p *Poller) countMovedOut(lost []string) {
	p.gmu.Lock()
	defer p.gmu.Unlock()
	for _, name := range lost {
		if _, ok := p.gs.inventory[name]; ok {
			p.moveOut.Add(1)
		}
	}
}

// removeAll stops polling devices and forgets their states, as remove
// does for each, with one write to the store for all of them: a poller
// that hands hundreds of devices to a member that joins is not held up by
// an fsync or two per device.
func (p *Poller) removeAll(names []string) {
	if len(names) < 2 {
		for _, n := range names {
			p.remove(n)
		}
		return
	}
	type removed struct {
		name   string
		t      *target
		polled bool
	}
	var rs []removed
	p.mu.Lock()
	for _, name := range names {
		t, ok := p.devices[name]
		if !ok {
			continue
		}
		t.deleted = true
		delete(p.devices, name)
		if p.byAddr[t.dev.Address] == name {
			delete(p.byAddr, t.dev.Address)
		}
		rs = append(rs, removed{name, t, p.busy[name]})
		p.busy[name] = true
	}
	p.mu.Unlock()
	var all, forget []string
	for _, r := range rs {
		all = append(all, r.name)
		if !r.polled {
			forget = append(forget, r.name) // a worker polling one forgets it when done
		}
	}
	if err := p.store.DeleteDevices(all, forget); err != nil {
		p.log.Warn("uncache devices", "devices", len(all), "err", err)
	}
	p.log.Info("devices removed", "devices", len(all))
	for _, r := range rs {
		if !r.polled && r.t.snmp != nil {
			r.t.snmp.Close()
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range rs {
		if !r.polled { // else the worker forgets and releases the name
			p.release(r.name)
		}
	}
}

// takeOver seeds the check states of devices another member polled until
// now from what the site's events last announced of them, in one read and
// one commit, so that a device that is down when it moves is not announced
// down again. Without an answer within takeOverWait (or before ctx is
// done) they start from no state.
func (p *Poller) takeOver(ctx context.Context, devices []string) {
	if len(devices) == 0 {
		return
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, takeOverWait)
	defer cancel()
	last, err := p.group.LastStates(ctx, devices)
	if err != nil {
		p.log.Warn("taking devices over without their last states", "devices", len(devices), "err", err)
		return
	}
	now := p.cfg.Now()
	var ups []storage.StateUpdate
	for device, checks := range last {
		for check, st := range checks {
			v, ok := seedState(check, st, now)
			if !ok {
				continue
			}
			b, err := encodeState(v)
			if err != nil {
				continue
			}
			ups = append(ups, storage.StateUpdate{Device: device, Check: check, Value: b})
		}
	}
	if len(ups) > 0 {
		if err := p.store.Commit(nil, ups); err != nil {
			p.log.Warn("seed the states of devices taken over", "devices", len(devices), "err", err)
			return
		}
	}
	p.log.Info("took devices over", "devices", len(devices), "with_states", len(last), "read", time.Since(start).Round(time.Millisecond))
}

// seedState is the state a poller taking a device over at now stores for
// one check from what the site's events last said of it; false: none.
// A check whose last event is flapping was held back by the previous
// owner, which would have announced the state it settled in once stable
// for a flap window: the new owner holds it as flapping from now, so it
// announces that state after a whole window (a flapping alarm clears, or
// becomes the failure again) instead of taking the flap's state as news
// or never announcing it. The uptime check is a device's reboot history,
// not an up/down state: a reboot flap goes on as held reboots from now
// (a stable event a window later), and its other states seed nothing
// (the first poll reads the uptime afresh).
func seedState(check string, st meshmon.LastState, now time.Time) (any, bool) {
	flapping := st.Kind == meshmon.KindFlapping
	switch {
	case check == keyUptime && flapping:
		return uptimeState{Reboots: repeats{Times: []time.Time{now}, Held: true}}, true
	case check == keyUptime:
		return nil, false
	case flapping:
		return checkState{State: st.State, Reported: st.State, Flapping: true, Changes: []time.Time{now}, Since: now}, true
	}
	return checkState{State: st.State, Reported: st.State, Since: now}, true
}

// remember notes when a was made, forgetting the oldest beyond
// appliedKept.
func (gs *groupState) remember(a meshmon.Assignment) {
	if gs.applied == nil {
		gs.applied = map[uint64]time.Time{}
	}
	gs.applied[a.Revision] = a.Time
	if len(gs.applied) > appliedKept {
		delete(gs.applied, slices.Min(slices.Collect(maps.Keys(gs.applied))))
	}
}

// forget drops the device of that name from the inventory.
func (gs *groupState) forget(name string) {
	d, ok := gs.inventory[name]
	if !ok {
		return
	}
	delete(gs.inventory, name)
	if gs.byAddr[d.Address] == d.Name {
		delete(gs.byAddr, d.Address)
	}
}

// deviceAt is the device of the site's inventory at addr, for a trap from
// a device another member polls.
func (p *Poller) deviceAt(addr string) (meshmon.Device, bool) {
	p.gmu.Lock()
	defer p.gmu.Unlock()
	d, ok := p.gs.inventory[p.gs.byAddr[addr]]
	if !ok {
		return meshmon.Device{}, false
	}
	return *d, true
}

// superseded reports whether m is an observation of a device that another
// member of the group owned when m was made (or from the poll slot it got
// the device in): the member that owned it was cut off from its peer, or
// hung, and the group gave the device to another, which polled it at once;
// its observations are the ones kept. The assignment remembers a device's
// current owner and the one before, which covers a member that is cut off
// and gets its devices back when it returns. (Within the streams' duplicate windows the
// same slot would be stored once anyway, by message id; after a longer cut
// it would not.) Traps and task records are never superseded: only the
// member that received one has it.
func (p *Poller) superseded(m meshmon.Message) bool {
	if p.group == nil {
		return false
	}
	if m.Stream == meshmon.StreamEvents && (m.Kind == meshmon.KindTrap || m.Kind == meshmon.KindTask) || m.Time.IsZero() {
		return false
	}
	dev := m.Device
	p.gmu.Lock()
	latest := p.gs.latest.Revision
	owner, since, prev := p.gs.latest.Owners[dev], p.gs.latest.Since[dev], p.gs.latest.Prev[dev]
	var interval time.Duration
	if d, ok := p.gs.inventory[dev]; ok {
		interval = d.Interval.D()
	}
	p.gmu.Unlock()
	if m.Stream == meshmon.StreamMetrics && owner == p.cfg.Name && prev.Poller != "" && prev.Poller != p.cfg.Name &&
		!m.Time.Before(since.Truncate(max(interval, 1))) {
		// The device came back to this poller from another: a sample
		// of its current spell polled under an assignment made before
		// the spell began (the poller hung through the hand-over and
		// the return) carries a revision that no longer says who owned
		// it. Dropped: the next poll is under the current one. (An
		// event is kept: its state change is committed, and would not
		// be announced again.)
		if r := messageAssignment(m); r != 0 && r < latest {
			p.gmu.Lock()
			made, ok := p.gs.applied[r]
			p.gmu.Unlock()
			if !ok || made.Before(since) {
				return true
			}
		}
	}
	// The spell of another poller, from its slot on: that poller polled
	// the device at once when it got it, in that slot.
	other := func(poller string, from, until time.Time) (time.Time, time.Time, bool) {
		if poller == "" || poller == p.cfg.Name || from.IsZero() {
			return time.Time{}, time.Time{}, false
		}
		if interval > 0 {
			from = from.Truncate(interval)
		}
		return from, until, true
	}
	var spells [][2]time.Time
	if from, until, ok := other(owner, since, time.Time{}); ok {
		spells = append(spells, [2]time.Time{from, until})
	}
	if from, until, ok := other(prev.Poller, prev.Since, since); ok {
		spells = append(spells, [2]time.Time{from, until})
	}
	if len(spells) == 0 {
		return false
	}
	for _, sp := range spells {
		if !m.Time.Before(sp[0]) && (sp[1].IsZero() || m.Time.Before(sp[1])) {
			return true
		}
	}
	return false
}

// messageAssignment is the assignment revision that m (a sample or an
// event) was polled under; 0 when it carries none.
func messageAssignment(m meshmon.Message) uint64 {
	var v struct {
		Assignment uint64 `json:"assignment"`
		Data       struct {
			Assignment uint64 `json:"assignment"`
		} `json:"data"`
	}
	if json.Unmarshal(m.Data, &v) != nil {
		return 0
	}
	return max(v.Assignment, v.Data.Assignment)
}

// fencedPublisher publishes the spool of a poller in a group, less the
// observations another member superseded (see superseded), which leave the
// spool as if published and are counted.
type fencedPublisher struct {
	p       *Poller
	pub     Publisher
	dropped int // by the last PublishBatch
}

func (f *fencedPublisher) PublishBatch(ctx context.Context, msgs []meshmon.Message) (int, error) {
	keep := make([]meshmon.Message, 0, len(msgs))
	at := make([]int, 0, len(msgs)) // index in msgs of each kept message
	for i, m := range msgs {
		if f.p.superseded(m) {
			continue
		}
		keep = append(keep, m)
		at = append(at, i)
	}
	f.dropped = 0
	if len(keep) == len(msgs) {
		return f.pub.PublishBatch(ctx, msgs)
	}
	k := 0
	var err error
	if len(keep) > 0 {
		k, err = f.pub.PublishBatch(ctx, keep)
	}
	// Done: every message before the first kept one not stored.
	n := len(msgs)
	if k < len(keep) {
		n = at[k]
	}
	for i := range n {
		if !slices.Contains(at, i) {
			f.dropped++
		}
	}
	f.p.supersededN.Add(uint64(f.dropped))
	return n, err
}
