package poller

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/storage"
)

// State keys in the local store, per device.
const (
	keyUptime   = "uptime"
	keyCounters = "counters"
)

// observation collects what one poll produced, to be committed at once.
type observation struct {
	p    *Poller
	t    *target
	slot time.Time
	at   time.Time
	// prev is the device's state as its last poll committed it, read from
	// the store for this poll (readState).
	prev    polledState
	msgs    []meshmon.Message
	states  []storage.StateUpdate
	uptime  *uptimeState     // new uptime view, applied after commit
	lldpAt  time.Time        // neighbours read at, applied after commit
	samples []meshmon.Sample // what the poll read (a poll-now returns it)
}

// polledState is what a poll starts from: the check states and interface
// counters its device's last poll committed to the store.
type polledState struct {
	checks   map[string]checkState
	counters map[int]counterState
}

func (o *observation) event(data meshmon.EventData) {
	m, err := o.p.eventMessage(o.t.dev, o.slot, o.at, "", data)
	if err != nil {
		o.p.log.Error("build event", "device", o.t.dev.Name, "err", err)
		return
	}
	o.msgs = append(o.msgs, m)
}

func (o *observation) sample(s meshmon.Sample) {
	m, err := o.p.sampleMessage(o.t.dev, o.slot, o.at, &s)
	if err != nil {
		o.p.log.Error("build sample", "device", o.t.dev.Name, "err", err)
		return
	}
	o.msgs = append(o.msgs, m)
	o.samples = append(o.samples, s)
}

func (o *observation) put(key string, v any) {
	b, err := encodeState(v)
	if err != nil {
		o.p.log.Error("encode state", "device", o.t.dev.Name, "key", key, "err", err)
		return
	}
	o.states = append(o.states, storage.StateUpdate{Device: o.t.dev.Name, Check: key, Value: b})
}

// check feeds one up/down observation of a check into its state machine and
// records the events it decides on.
func (o *observation) check(check, obs, reason string, ev meshmon.EventData) {
	prev := o.prev.checks[check]
	next, anns := o.p.cfg.Damping.observe(prev, obs, o.at)
	if obs == stateDown {
		next.Reason = reason
	}
	for _, a := range anns {
		d := ev
		d.Check, d.Previous, d.State = check, a.From, a.To
		if a.Flapping {
			d.Kind = meshmon.KindFlapping
			d.Message = fmt.Sprintf("%s is flapping: %d changes in %s; further changes are held back until it is stable", checkLabel(check, ev), len(next.Changes), o.p.cfg.Damping.FlapWindow)
		} else {
			d.Kind = kindFor(check, a.To)
			d.Message = describe(d.Kind, check, ev, reason)
			if a.Settled {
				d.Message += fmt.Sprintf(" (stable for %s after flapping)", o.p.cfg.Damping.FlapWindow)
			}
		}
		if a.To == stateDown {
			d.Reason = reason
		}
		o.event(d)
	}
	if !sameState(prev, next) {
		o.put(check, next)
	}
}

// reach records whether a probe reached the device, observed now.
func (o *observation) reach(check string, ok bool, reason string) {
	o.at = o.p.cfg.Now()
	obs := stateUp
	if !ok {
		obs = stateDown
	}
	o.check(check, obs, reason, meshmon.EventData{})
}

func sameState(a, b checkState) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

func checkLabel(check string, ev meshmon.EventData) string {
	if ev.IfName != "" {
		return "interface " + ev.IfName
	}
	return check
}

func describe(kind, check string, ev meshmon.EventData, reason string) string {
	switch kind {
	case meshmon.KindNodeDown:
		return "node does not answer ICMP echo: " + reason
	case meshmon.KindNodeUp:
		return "node answers ICMP echo again"
	case meshmon.KindSNMPUnreachable:
		return "SNMP agent unreachable: " + reason
	case meshmon.KindSNMPReachable:
		return "SNMP agent answers again"
	case meshmon.KindIfDown:
		return fmt.Sprintf("interface %s (ifIndex %d) is down", ev.IfName, ev.IfIndex)
	case meshmon.KindIfUp:
		return fmt.Sprintf("interface %s (ifIndex %d) is up", ev.IfName, ev.IfIndex)
	}
	return kind + " on " + check
}

// readState reads what a poll of t starts from. The check states and
// counters are read from the store at every poll, not kept in memory
// between polls: every poll commits what changed of them (the counters at
// every full poll), so the store's copy is the same, and its pages are
// resident anyway; a copy in the heap, a map of checks and a map of
// counters per device, was 1.7 KiB a device, twice over with the
// collector's headroom (issue 19). The uptime view is read only at the
// first poll and kept in the target: a poll stores it only when the boot
// time or the reboot history changes, not the reading of every poll.
// A state that cannot be read or decoded starts afresh, with a warning.
func (p *Poller) readState(t *target) polledState {
	st := polledState{checks: make(map[string]checkState), counters: make(map[int]counterState)}
	all, err := p.store.States(t.dev.Name)
	if err != nil {
		p.log.Warn("read device state", "device", t.dev.Name, "err", err)
	}
	for k, v := range all {
		var err error
		switch k {
		case keyUptime:
			if t.loaded {
				continue
			}
			// The reboot history of a device taken over while it
			// flapped comes without a reading (takeOver): its first
			// poll reads the uptime afresh.
			err = json.Unmarshal(v, &t.uptime)
			t.uptimeOK = err == nil && !t.uptime.At.IsZero()
		case keyCounters:
			err = decodeCounters(v, &st.counters)
		default:
			var s checkState
			if err = decodeCheck(v, &s); err == nil {
				st.checks[k] = s
			}
		}
		if err != nil {
			p.log.Warn("decode device state; starting it afresh", "device", t.dev.Name, "key", k, "err", err)
		}
	}
	t.loaded = true
	return st
}

// poll probes one device once, commits what it saw and returns its
// samples (none when it was stopped or the device left meanwhile).
func (p *Poller) poll(ctx context.Context, t *target, slot time.Time) []meshmon.Sample {
	o := p.probe(ctx, t, slot)
	if o == nil {
		return nil
	}
	return p.record(o)
}

// probe polls t's device once and returns what it saw, to be recorded;
// nil when it was stopped or the device left meanwhile.
func (p *Poller) probe(ctx context.Context, t *target, slot time.Time) *observation {
	d := t.dev
	o := &observation{p: p, t: t, slot: slot, prev: p.readState(t)}

	if d.Has(meshmon.CheckICMP) {
		if p.icmpDenied != nil {
			// No verdict: the process may not ping, which says nothing
			// about the device. Run warned once at start.
			o.sample(meshmon.Sample{Check: meshmon.CheckICMP, Values: map[string]float64{"sent": 0},
				Labels: map[string]string{"state": "unknown", "reason": ReasonICMPNotPermitted}})
		} else {
			r := p.icmp.Ping(ctx, d.Address, d.TimeoutOrDefault())
			if ctx.Err() != nil {
				return nil
			}
			o.reach(meshmon.CheckICMP, r.OK, r.Reason)
			o.sample(meshmon.Sample{Check: meshmon.CheckICMP, Values: map[string]float64{
				"up":          b2f(r.OK),
				"sent":        float64(r.Sent),
				"received":    float64(r.Received),
				"loss_ratio":  r.Loss,
				"rtt_min_ms":  ms(r.RTTMin),
				"rtt_avg_ms":  ms(r.RTTAvg),
				"rtt_max_ms":  ms(r.RTTMax),
				"duration_ms": ms(r.Took),
			}})
		}
	}

	if d.Has(meshmon.CheckSNMP) {
		if t.snmp == nil {
			pr, err := newSNMPProber(d)
			if err != nil {
				p.log.Error("snmp client", "device", d.Name, "err", err)
			}
			t.snmp = pr
		}
		var r SNMPResult
		switch {
		case t.snmp != nil && t.check:
			r = t.snmp.PollSystem(ctx)
		case t.snmp != nil && p.neighborsDue(t) && p.takeNeighborSlot():
			r = t.snmp.PollNeighbors(ctx)
			<-p.neighborSlots
		case t.snmp != nil:
			r = t.snmp.Poll(ctx)
		default:
			r = SNMPResult{Reason: "snmp client could not be built"}
		}
		if ctx.Err() != nil {
			return nil
		}
		o.reach(meshmon.CheckSNMP, r.OK, r.Reason)
		if r.OK {
			p.observeSNMP(o, r)
			p.observeNeighbors(o, r)
		}
	}

	p.mu.Lock()
	gone := t.replaced || t.deleted
	p.mu.Unlock()
	if gone {
		return nil // the next target of this name polls afresh
	}
	return o
}

// record commits what a poll saw and applies it to its target; it
// returns the poll's samples, none when the commit failed.
func (p *Poller) record(o *observation) []meshmon.Sample {
	if p.beforeRecord != nil {
		p.beforeRecord(o)
	}
	t := o.t
	if err := p.commit(o.msgs, o.states); err != nil {
		return nil // state is left as it was, so the change is seen again on the next poll
	}
	if o.uptime != nil {
		t.uptime, t.uptimeOK = *o.uptime, true
	}
	if !o.lldpAt.IsZero() {
		t.lldpAt = o.lldpAt
	}
	t.check = false
	return o.samples
}

// neighborsDue reports whether t's LLDP and CDP neighbours are due to be
// read (see Config.TopologyInterval): never yet, or not for the interval.
func (p *Poller) neighborsDue(t *target) bool {
	every := p.cfg.TopologyInterval
	return every > 0 && (t.lldpAt.IsZero() || p.cfg.Now().Sub(t.lldpAt) >= every)
}

// takeNeighborSlot takes one of the slots of the neighbour readings that
// may run at once (give it back to p.neighborSlots), or reports that all
// are taken. A poll that finds none polls without the reading, which comes
// at one of the device's next polls: a reading is several walks, about as
// long as the poll itself, and each device's first poll reads them, so a
// poller starting with 100,000 devices would otherwise read them all in
// its first interval, beside the polls, and fall behind (issue 19).
func (p *Poller) takeNeighborSlot() bool {
	select {
	case p.neighborSlots <- struct{}{}:
		return true
	default:
		return false
	}
}

// neighborReadings is how many neighbour readings a poller with workers
// runs at once, at most: a quarter of its workers.
func neighborReadings(workers int) int { return max(1, workers/4) }

// observeNeighbors adds the neighbours the poll r read, if it read them,
// as the device's lldp sample. A failed reading is logged and tried again
// at the next poll.
func (p *Poller) observeNeighbors(o *observation, r SNMPResult) {
	if r.NeighborsErr != nil {
		p.log.Warn("read neighbours", "device", o.t.dev.Name, "err", r.NeighborsErr)
	}
	if r.Neighbors == nil {
		return
	}
	nt := r.Neighbors
	o.lldpAt = p.cfg.Now()
	labels := map[string]string{}
	for k, v := range map[string]string{meshmon.LabelChassisID: nt.Local.ChassisID,
		meshmon.LabelChassisIDSubtype: nt.Local.ChassisIDSubtype, meshmon.LabelSysName: nt.Local.SysName} {
		if v != "" {
			labels[k] = v
		}
	}
	o.sample(meshmon.Sample{Check: meshmon.CheckLLDP, Labels: labels, Neighbors: nt.Neighbors,
		Values: map[string]float64{"neighbors": float64(len(nt.Neighbors))}})
}

// observeSNMP turns a successful SNMP poll into reboot and interface events
// and metric samples, and the interface counters to store.
func (p *Poller) observeSNMP(o *observation, r SNMPResult) {
	t := o.t
	up, rebooted := observeUptime(t.uptime, t.uptimeOK, r.SysUpTime, o.at)
	verdict, settled := pointHeld, false
	if rebooted {
		up.Reboots, verdict = p.cfg.Damping.point(up.Reboots, o.at)
	} else {
		up.Reboots, settled = p.cfg.Damping.settle(up.Reboots, o.at)
	}
	switch {
	case rebooted && verdict == pointAnnounce:
		o.event(meshmon.EventData{
			Kind:     meshmon.KindReboot,
			Check:    keyUptime,
			Message:  fmt.Sprintf("device rebooted: sysUpTime is %s, booted at %s", ticks(r.SysUpTime), up.BootTime.UTC().Format(time.RFC3339)),
			Previous: t.uptime.BootTime.UTC().Format(time.RFC3339),
			State:    up.BootTime.UTC().Format(time.RFC3339),
		})
	case rebooted && verdict == pointFlapping:
		o.event(meshmon.EventData{
			Kind:    meshmon.KindFlapping,
			Check:   keyUptime,
			Message: fmt.Sprintf("device reboots too often: %d reboots in %s; further reboot events are held back until it is stable for %s", len(up.Reboots.Times), p.cfg.Damping.FlapWindow, p.cfg.Damping.FlapWindow),
			State:   "rebooting",
		})
	case settled:
		o.event(meshmon.EventData{
			Kind:     meshmon.KindStable,
			Check:    keyUptime,
			Message:  fmt.Sprintf("device has not rebooted for %s: reboot events are sent again", p.cfg.Damping.FlapWindow),
			Previous: "rebooting",
			State:    "stable",
		})
	}
	if !t.uptimeOK || up.BootTime != t.uptime.BootTime || rebooted || !sameRepeats(up.Reboots, t.uptime.Reboots) {
		o.put(keyUptime, up)
	}
	o.uptime = &up

	sys := meshmon.Sample{Check: "system",
		Values: map[string]float64{"uptime_seconds": float64(r.SysUpTime) / 100, "duration_ms": ms(r.Took)},
		Labels: map[string]string{"sys_name": r.SysName, "sys_descr": r.SysDescr, "sys_object_id": r.SysObjectID},
	}
	if r.SystemOnly {
		// The interfaces were not read: their states and counters stay
		// as they were.
		o.sample(sys)
		return
	}
	sys.Values["interfaces"] = float64(len(r.Interfaces))
	o.sample(sys)

	counters := make(map[int]counterState, len(r.Interfaces))
	rows := make([]meshmon.InterfaceSample, 0, len(r.Interfaces))
	seen := make(map[string]bool, len(r.Interfaces))
	for _, row := range r.Interfaces {
		name := row.Name
		if name == "" {
			name = row.Descr
		}
		s := meshmon.InterfaceSample{
			Index: row.Index, Name: name,
			AdminStatus: ifStatus(row.AdminStatus), OperStatus: ifStatus(row.OperStatus),
			InOctets: row.InOctets, OutOctets: row.OutOctets, HighCounter: row.HC,
		}
		cur := counterState{In: row.InOctets, Out: row.OutOctets, HC: row.HC, At: o.at}
		if prev, ok := o.prev.counters[row.Index]; ok && !rebooted && prev.HC == row.HC {
			if secs := o.at.Sub(prev.At).Seconds(); secs > 0 {
				bits := 32
				if row.HC {
					bits = 64
				}
				if dIn, ok := CounterDelta(prev.In, row.InOctets, bits); ok {
					s.InBps = float64(dIn) * 8 / secs
				}
				if dOut, ok := CounterDelta(prev.Out, row.OutOctets, bits); ok {
					s.OutBps = float64(dOut) * 8 / secs
				}
			}
		}
		counters[row.Index] = cur
		rows = append(rows, s)

		check := "if." + strconv.Itoa(row.Index)
		seen[check] = true
		if row.AdminStatus != 1 {
			continue // administratively down: nobody is to be paged for it
		}
		var obs string
		switch row.OperStatus {
		case 1:
			obs = stateUp
		case 2, 7: // down, lowerLayerDown
			obs = stateDown
		default:
			continue // testing, unknown, dormant, notPresent: no verdict
		}
		o.check(check, obs, "ifOperStatus "+s.OperStatus, meshmon.EventData{IfIndex: row.Index, IfName: name})
	}
	// Interfaces that vanished take their state with them.
	for k := range o.prev.checks {
		if strings.HasPrefix(k, "if.") && !seen[k] {
			o.states = append(o.states, storage.StateUpdate{Device: t.dev.Name, Check: k})
		}
	}
	o.put(keyCounters, counters)
	o.sample(meshmon.Sample{Check: "if", Interfaces: rows})
}

var ifStatuses = map[int]string{1: "up", 2: "down", 3: "testing", 4: "unknown", 5: "dormant", 6: "notPresent", 7: "lowerLayerDown"}

func ifStatus(v int) string {
	if s, ok := ifStatuses[v]; ok {
		return s
	}
	return strconv.Itoa(v)
}

func sameRepeats(a, b repeats) bool {
	return a.Held == b.Held && slices.EqualFunc(a.Times, b.Times, time.Time.Equal)
}

func ticks(t uint32) string {
	return (time.Duration(t) * 10 * time.Millisecond).String()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
