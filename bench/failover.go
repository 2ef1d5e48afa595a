package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/bus/pollerlink"
	"github.com/meshmon/meshmon/internal/meshtest"
	"github.com/meshmon/meshmon/poller"
	"github.com/meshmon/meshmon/sim"
	"github.com/meshmon/meshmon/storage"
)

// failoverBenchResult is what `meshmon bench failover` measured.
type failoverBenchResult struct {
	Pollers       int     `json:"pollers"`
	Devices       int     `json:"devices"`
	Failovers     int     `json:"failovers"`
	Interval      string  `json:"interval"`
	FailoverP50   string  `json:"failover_p50"`
	FailoverP95   string  `json:"failover_p95"`
	FailoverMax   string  `json:"failover_max"`
	MovedOnJoin   float64 `json:"devices_moved_per_join"`
	FairShare     float64 `json:"fair_share"`
	LeaderCrashes int     `json:"leader_crashes"`
}

// benchMember is one poller of the benchmark's group, in this process.
type benchMember struct {
	name    string
	nc      *nats.Conn
	group   *bus.Group
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	store   *storage.DB
	lastHB  time.Time // its last heartbeat the peer acknowledged
	hbMu    sync.Mutex
	crashed bool
}

// hbRecorder is a poller registry that remembers the last heartbeat the
// peer took.
type hbRecorder struct {
	reg *bus.Registry
	m   *benchMember
}

func (r hbRecorder) Heartbeat(ctx context.Context, info meshmon.PollerInfo) error {
	if err := r.reg.Heartbeat(ctx, info); err != nil {
		return err
	}
	r.m.hbMu.Lock()
	r.m.lastHB = time.Now()
	r.m.hbMu.Unlock()
	return nil
}

// failoverPoll is one sample as it is stored: who polled which device when.
type failoverPoll struct {
	device, poller string
	at             time.Time
}

// failoverRun is one run of the failover bench: a site peer, simulated
// devices and a group of pollers in this process.
type failoverRun struct {
	ctx     context.Context
	bc      FailoverConfig
	dir     string
	url     string
	js      jetstream.JetStream
	cfg     poller.Config // every member's, but its name
	members []*benchMember
	polls   chan failoverPoll
}

// Failover crashes poller group members again and again and measures the
// time from a dead member's last heartbeat to its successor's first poll
// of each of its devices, and the devices a member's join moves.
func Failover(ctx context.Context, bc FailoverConfig) error {
	nPollers, nDevices, nFail := bc.Pollers, bc.Devices, bc.Failovers
	if nPollers < 2 || nPollers > 20 || nDevices < 1 || nDevices > 5000 || nFail < 1 {
		return errors.New("--pollers must be 2 to 20, --devices 1 to 5000 and --failovers at least 1")
	}
	if bc.Interval == 0 {
		bc.Interval = time.Minute
	}
	if bc.Interval < time.Second {
		return fmt.Errorf("--interval %s: use at least 1s", bc.Interval)
	}
	out := bc.stdout()
	if bc.JSON {
		out = bc.stderr()
	}
	dir, err := os.MkdirTemp("", "meshmon-bench-failover-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	r := &failoverRun{ctx: ctx, bc: bc, dir: dir, polls: make(chan failoverPoll, 100_000)}
	stop, err := r.setup()
	defer stop()
	if err != nil {
		return err
	}
	r.cfg = poller.DefaultConfig()
	r.cfg.Site, r.cfg.HeartbeatEvery, r.cfg.MemberTimeout = "bench", bc.Heartbeat, bc.MemberTimeout
	r.cfg.Version = bc.Version
	r.members = make([]*benchMember, nPollers)
	defer func() {
		for _, m := range r.members {
			if m != nil && !m.crashed {
				m.crash()
			}
		}
	}()
	for i := range r.members {
		if r.members[i], err = r.startMember(fmt.Sprintf("fp%d", i+1)); err != nil {
			return err
		}
	}
	a, err := r.settled()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "group: %d pollers, %d devices; member timeout %s, heartbeat %s\n", nPollers, nDevices, r.cfg.MemberTimeout, r.cfg.HeartbeatEvery)

	res := failoverBenchResult{Pollers: nPollers, Devices: nDevices, Interval: bc.Interval.String(), Failovers: nFail, FairShare: float64(nDevices) / float64(nPollers)}
	var times []time.Duration
	moved := 0
	for i := range nFail {
		worst, victim, wasLeader, n, err := r.failover(i, a)
		if err != nil {
			return err
		}
		if wasLeader {
			res.LeaderCrashes++
		}
		times = append(times, worst)
		fmt.Fprintf(out, "failover %d: %s crashed (leader: %v), its %d devices polled again %s after its last heartbeat\n",
			i+1, victim.name, wasLeader, n, worst.Round(time.Millisecond))
		var m int
		if a, m, err = r.rejoin(victim); err != nil {
			return err
		}
		moved += m
	}
	slices.Sort(times)
	res.FailoverP50 = times[len(times)/2].Round(time.Millisecond).String()
	res.FailoverP95 = times[min(len(times)-1, len(times)*95/100)].Round(time.Millisecond).String()
	res.FailoverMax = times[len(times)-1].Round(time.Millisecond).String()
	res.MovedOnJoin = float64(moved) / float64(nFail)
	return res.print(bc)
}

func (res failoverBenchResult) print(bc FailoverConfig) error {
	if bc.JSON {
		return printJSON(bc.stdout(), res)
	}
	tw := tabwriter.NewWriter(bc.stdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nMEASURE\tVALUE")
	fmt.Fprintf(tw, "failover (last heartbeat to the successor's first poll of each device)\tp50 %s, p95 %s, max %s over %d crashes (%d of the leader); %d devices every %s\n",
		res.FailoverP50, res.FailoverP95, res.FailoverMax, res.Failovers, res.LeaderCrashes, res.Devices, res.Interval)
	fmt.Fprintf(tw, "devices moved when a member joins\t%.1f (its fair share: %.1f of %d)\n", res.MovedOnJoin, res.FairShare, res.Devices)
	return tw.Flush()
}

// setup starts the site peer and the simulated devices, puts them in the
// inventory and follows every sample; stop undoes it, also after an error.
func (r *failoverRun) setup() (stop func(), err error) {
	var undo []func()
	stop = func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	ctx := r.ctx
	p, err := meshtest.Site(ctx, r.dir, "bench-peer", "bench", true)
	if err != nil {
		return stop, err
	}
	undo = append(undo, p.Close)
	r.url = p.ClientURL()
	nc, err := nats.Connect(r.url)
	if err != nil {
		return stop, err
	}
	undo = append(undo, nc.Close)
	if r.js, err = jetstream.New(nc); err != nil {
		return stop, err
	}
	scfg := sim.DefaultConfig()
	scfg.Agents, scfg.NamePrefix, scfg.BaseAddr = r.bc.Devices, "fd", netip.MustParseAddr("127.83.0.1")
	sm, err := sim.New(scfg)
	if err != nil {
		return stop, err
	}
	if err := sm.Start(ctx); err != nil {
		return stop, err
	}
	undo = append(undo, func() { sm.Close() })
	inv, err := bus.OpenInventory(ctx, r.js)
	if err != nil {
		return stop, err
	}
	for _, a := range sm.Agents() {
		d := meshmon.Device{Name: a.Name(), Address: a.Addr().Addr().String(), Checks: []string{meshmon.CheckSNMP},
			Interval: meshmon.Duration(r.bc.Interval), Timeout: meshmon.Duration(500 * time.Millisecond),
			SNMP: &meshmon.SNMP{Version: meshmon.SNMPv2c, Port: int(a.Addr().Port()), Community: "public"}}
		if _, err := inv.Put(ctx, d); err != nil {
			return stop, err
		}
	}
	sub, err := nc.Subscribe("mx.bench.>", func(m *nats.Msg) {
		var s meshmon.Sample
		if json.Unmarshal(m.Data, &s) == nil && s.Check == "system" {
			select {
			case r.polls <- failoverPoll{s.Device, s.Poller, s.Time}:
			default:
			}
		}
	})
	if err != nil {
		return stop, err
	}
	undo = append(undo, func() { _ = sub.Unsubscribe() })
	return stop, nil
}

// startMember starts a member of the group named name, on a connection of
// its own.
func (r *failoverRun) startMember(name string) (*benchMember, error) {
	ctx := r.ctx
	m := &benchMember{name: name}
	store, err := storage.Open(filepath.Join(r.dir, "poller-"+name+".db"), storage.Options{})
	if err != nil {
		return nil, err
	}
	m.store = store
	if m.nc, err = nats.Connect(r.url); err != nil {
		return nil, err
	}
	mjs, _ := jetstream.New(m.nc)
	reg, err := bus.OpenRegistry(ctx, mjs)
	if err != nil {
		return nil, err
	}
	minv, err := bus.OpenInventory(ctx, mjs)
	if err != nil {
		return nil, err
	}
	mc := r.cfg
	mc.Name = name
	if mc.Instance, err = store.Instance(); err != nil {
		return nil, err
	}
	pl, err := poller.New(mc, nil, store, bus.NewPublisher(mjs), minv, hbRecorder{reg, m})
	if err != nil {
		return nil, err
	}
	if m.group, err = bus.NewGroup(mjs, pollerlink.GroupConfig(mc.Seat()), nil); err != nil {
		return nil, err
	}
	pl.JoinGroup(m.group)
	mctx, cancel := context.WithCancel(ctx)
	m.cancel = cancel
	m.wg.Go(func() { m.group.Run(mctx) })
	m.wg.Go(func() { _ = pl.Run(mctx) })
	return m, nil
}

// crash stops a member as SIGKILL would: its connection goes first, so
// it neither leaves the group nor gives up a lease.
func (m *benchMember) crash() {
	m.nc.Close()
	m.cancel()
	m.wg.Wait()
	m.store.Close()
	m.crashed = true
}

// assignment reads the group's assignment from the peer.
func (r *failoverRun) assignment() (meshmon.Assignment, error) {
	kv, err := r.js.KeyValue(r.ctx, bus.GroupBucket)
	if err != nil {
		return meshmon.Assignment{}, err
	}
	return bus.ReadAssignment(r.ctx, kv, r.cfg.Site)
}

// settled waits for an assignment of every device to exactly the members
// that run.
func (r *failoverRun) settled() (meshmon.Assignment, error) {
	var want []string
	for _, m := range r.members {
		if !m.crashed {
			want = append(want, m.name)
		}
	}
	slices.Sort(want)
	for deadline := time.Now().Add(time.Minute); ; {
		a, err := r.assignment()
		if err == nil && slices.Equal(a.Members, want) && len(a.Owners) == r.bc.Devices {
			return a, nil
		}
		if time.Now().After(deadline) {
			return a, fmt.Errorf("the group did not settle on %v within a minute (have %v, %v)", want, a.Members, err)
		}
		if err := waitCtx(r.ctx, 20*time.Millisecond); err != nil {
			return a, err
		}
	}
}

// failover crashes a member, the leader every other time (i odd), and
// returns how long after its last heartbeat the last of its n devices was
// polled by another member, and the group settled without it.
func (r *failoverRun) failover(i int, a meshmon.Assignment) (worst time.Duration, victim *benchMember, wasLeader bool, n int, err error) {
	for _, m := range r.members {
		if (m.group.Leading() == (i%2 == 1)) && victim == nil {
			victim = m
		}
	}
	if victim == nil {
		victim = r.members[0]
	}
	wasLeader = victim.group.Leading()
	own := a.Owned(victim.name)
	for len(r.polls) > 0 {
		<-r.polls
	}
	victim.crash()
	victim.hbMu.Lock()
	last := victim.lastHB
	victim.hbMu.Unlock()
	// Each of its devices' first poll by another member.
	first := map[string]time.Time{}
	deadline := time.After(time.Minute)
	for len(first) < len(own) {
		select {
		case pl := <-r.polls:
			if own[pl.device] && pl.poller != victim.name && pl.at.After(last) {
				if _, ok := first[pl.device]; !ok {
					first[pl.device] = pl.at
				}
			}
		case <-deadline:
			return 0, victim, wasLeader, len(own), fmt.Errorf("failover %d: %d of %s's %d devices polled by another member after a minute", i+1, len(first), victim.name, len(own))
		case <-r.ctx.Done():
			return 0, victim, wasLeader, len(own), r.ctx.Err()
		}
	}
	for _, at := range first {
		worst = max(worst, at.Sub(last))
	}
	if _, err := r.settled(); err != nil {
		return worst, victim, wasLeader, len(own), err
	}
	return worst, victim, wasLeader, len(own), nil
}

// rejoin brings a crashed member back (same store, so same name) and
// counts the devices its join moves.
func (r *failoverRun) rejoin(victim *benchMember) (meshmon.Assignment, int, error) {
	before, err := r.assignment()
	if err != nil {
		return before, 0, err
	}
	idx := slices.Index(r.members, victim)
	if r.members[idx], err = r.startMember(victim.name); err != nil {
		return before, 0, err
	}
	a, err := r.settled()
	if err != nil {
		return a, 0, err
	}
	moved := 0
	for d, pl := range a.Owners {
		if before.Owners[d] != pl {
			moved++
		}
	}
	return a, moved, nil
}
