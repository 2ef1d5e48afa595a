package main

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
	"github.com/urfave/cli/v2"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/peer"
	"github.com/meshmon/meshmon/poller"
	"github.com/meshmon/meshmon/sim"
	"github.com/meshmon/meshmon/storage"
)

func benchFailoverCommand() *cli.Command {
	return &cli.Command{
		Name: "failover",
		Usage: "crash poller group members again and again: time from the dead poller's last heartbeat to its " +
			"successor's first poll of each of its devices, and devices moved when a member joins",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "pollers", Value: 3, Usage: "members of the group"},
			&cli.IntFlag{Name: "devices", Value: 30, Usage: "simulated SNMP devices"},
			&cli.IntFlag{Name: "failovers", Value: 20, Usage: "crashes, every other one of the leader"},
			&cli.DurationFlag{Name: "member-timeout", Value: poller.DefaultConfig().MemberTimeout, Usage: "the group's member timeout"},
			&cli.DurationFlag{Name: "heartbeat", Value: poller.DefaultConfig().HeartbeatEvery, Usage: "the members' heartbeat interval"},
			jsonFlag(),
		},
		Action: benchFailover,
	}
}

// failoverBenchResult is what `meshmon bench failover` measured.
type failoverBenchResult struct {
	Pollers       int     `json:"pollers"`
	Devices       int     `json:"devices"`
	Failovers     int     `json:"failovers"`
	FailoverP50   string  `json:"failover_p50"`
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

func benchFailover(c *cli.Context) error {
	nPollers, nDevices, nFail := c.Int("pollers"), c.Int("devices"), c.Int("failovers")
	if nPollers < 2 || nPollers > 20 || nDevices < 1 || nDevices > 5000 || nFail < 1 {
		return errors.New("--pollers must be 2 to 20, --devices 1 to 5000 and --failovers at least 1")
	}
	ctx := c.Context
	out := os.Stdout
	if c.Bool("json") {
		out = os.Stderr
	}
	dir, err := os.MkdirTemp("", "meshmon-bench-failover-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	pcfg := peer.DefaultConfig()
	pcfg.Insecure = true // a benchmark on loopback, in this process
	pcfg.Site, pcfg.Name, pcfg.Listen, pcfg.DataDir = "bench", "bench-peer", "127.0.0.1:0", filepath.Join(dir, "peer")
	p, err := peer.New(pcfg, nil)
	if err != nil {
		return err
	}
	if err := p.Start(ctx); err != nil {
		return err
	}
	defer p.Close()
	url := p.ClientURL()
	nc, err := nats.Connect(url)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}

	scfg := sim.DefaultConfig()
	scfg.Agents, scfg.NamePrefix, scfg.BaseAddr = nDevices, "fd", netip.MustParseAddr("127.83.0.1")
	sm, err := sim.New(scfg)
	if err != nil {
		return err
	}
	if err := sm.Start(ctx); err != nil {
		return err
	}
	defer sm.Close()
	inv, err := bus.OpenInventory(ctx, js)
	if err != nil {
		return err
	}
	for _, a := range sm.Agents() {
		d := meshmon.Device{Name: a.Name(), Address: a.Addr().Addr().String(), Checks: []string{meshmon.CheckSNMP},
			Interval: meshmon.Duration(time.Minute), Timeout: meshmon.Duration(500 * time.Millisecond),
			SNMP: &meshmon.SNMP{Version: meshmon.SNMPv2c, Port: int(a.Addr().Port()), Community: "public"}}
		if _, err := inv.Put(ctx, d); err != nil {
			return err
		}
	}

	// Every sample, as it is stored: who polled which device when.
	type poll struct {
		device, poller string
		at             time.Time
	}
	polls := make(chan poll, 100_000)
	sub, err := nc.Subscribe("mx.bench.>", func(m *nats.Msg) {
		var s meshmon.Sample
		if json.Unmarshal(m.Data, &s) == nil && s.Check == "system" {
			select {
			case polls <- poll{s.Device, s.Poller, s.Time}:
			default:
			}
		}
	})
	if err != nil {
		return err
	}
	defer sub.Unsubscribe()

	cfg := poller.DefaultConfig()
	cfg.Site, cfg.HeartbeatEvery, cfg.MemberTimeout = "bench", c.Duration("heartbeat"), c.Duration("member-timeout")
	cfg.Version = version
	startMember := func(name string) (*benchMember, error) {
		m := &benchMember{name: name}
		store, err := storage.Open(filepath.Join(dir, "poller-"+name+".db"), storage.Options{})
		if err != nil {
			return nil, err
		}
		m.store = store
		if m.nc, err = nats.Connect(url); err != nil {
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
		mc := cfg
		mc.Name = name
		if mc.Instance, err = store.Instance(); err != nil {
			return nil, err
		}
		pl, err := poller.New(mc, nil, store, bus.NewPublisher(mjs), minv, hbRecorder{reg, m})
		if err != nil {
			return nil, err
		}
		if m.group, err = bus.NewGroup(mjs, groupConfig(mc), nil); err != nil {
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
	crash := func(m *benchMember) {
		m.nc.Close()
		m.cancel()
		m.wg.Wait()
		m.store.Close()
		m.crashed = true
	}
	members := make([]*benchMember, nPollers)
	for i := range members {
		if members[i], err = startMember(fmt.Sprintf("fp%d", i+1)); err != nil {
			return err
		}
	}
	defer func() {
		for _, m := range members {
			if !m.crashed {
				crash(m)
			}
		}
	}()
	assignment := func() (meshmon.Assignment, error) {
		kv, err := js.KeyValue(ctx, bus.GroupBucket)
		if err != nil {
			return meshmon.Assignment{}, err
		}
		e, err := kv.Get(ctx, bus.GroupAssignmentKey(cfg.Site))
		if err != nil {
			return meshmon.Assignment{}, err
		}
		a, err := bus.DecodeAssignment(e.Value())
		if err != nil {
			return a, err
		}
		a.Revision = e.Revision()
		return a, nil
	}
	// settled waits for an assignment of every device to exactly the
	// members that run.
	settled := func() (meshmon.Assignment, error) {
		var want []string
		for _, m := range members {
			if !m.crashed {
				want = append(want, m.name)
			}
		}
		slices.Sort(want)
		for deadline := time.Now().Add(time.Minute); ; {
			a, err := assignment()
			if err == nil && slices.Equal(a.Members, want) && len(a.Owners) == nDevices {
				return a, nil
			}
			if time.Now().After(deadline) {
				return a, fmt.Errorf("the group did not settle on %v within a minute (have %v, %v)", want, a.Members, err)
			}
			if err := waitCtx(ctx, 20*time.Millisecond); err != nil {
				return a, err
			}
		}
	}
	a, err := settled()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "group: %d pollers, %d devices; member timeout %s, heartbeat %s\n", nPollers, nDevices, cfg.MemberTimeout, cfg.HeartbeatEvery)

	res := failoverBenchResult{Pollers: nPollers, Devices: nDevices, Failovers: nFail, FairShare: float64(nDevices) / float64(nPollers)}
	var times []time.Duration
	moved := 0
	for i := range nFail {
		// Every other crash is of the leader.
		var victim *benchMember
		for _, m := range members {
			if (m.group.Leading() == (i%2 == 1)) && victim == nil {
				victim = m
			}
		}
		if victim == nil {
			victim = members[0]
		}
		wasLeader := victim.group.Leading()
		if wasLeader {
			res.LeaderCrashes++
		}
		own := a.Owned(victim.name)
		for len(polls) > 0 {
			<-polls
		}
		crash(victim)
		victim.hbMu.Lock()
		last := victim.lastHB
		victim.hbMu.Unlock()
		// Each of its devices' first poll by another member.
		first := map[string]time.Time{}
		deadline := time.After(time.Minute)
		for len(first) < len(own) {
			select {
			case pl := <-polls:
				if own[pl.device] && pl.poller != victim.name && pl.at.After(last) {
					if _, ok := first[pl.device]; !ok {
						first[pl.device] = pl.at
					}
				}
			case <-deadline:
				return fmt.Errorf("failover %d: %d of %s's %d devices polled by another member after a minute", i+1, len(first), victim.name, len(own))
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		worst := time.Duration(0)
		for _, at := range first {
			worst = max(worst, at.Sub(last))
		}
		times = append(times, worst)
		fmt.Fprintf(out, "failover %d: %s crashed (leader: %v), its %d devices polled again %s after its last heartbeat\n",
			i+1, victim.name, wasLeader, len(own), worst.Round(time.Millisecond))
		if _, err := settled(); err != nil {
			return err
		}
		// It comes back (same store, so same name); count the devices a
		// join moves.
		before, err := assignment()
		if err != nil {
			return err
		}
		idx := slices.Index(members, victim)
		if members[idx], err = startMember(victim.name); err != nil {
			return err
		}
		if a, err = settled(); err != nil {
			return err
		}
		for d, pl := range a.Owners {
			if before.Owners[d] != pl {
				moved++
			}
		}
	}
	slices.Sort(times)
	res.FailoverP50 = times[len(times)/2].Round(time.Millisecond).String()
	res.FailoverMax = times[len(times)-1].Round(time.Millisecond).String()
	res.MovedOnJoin = float64(moved) / float64(nFail)
	if c.Bool("json") {
		return printJSON(os.Stdout, res)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nMEASURE\tVALUE")
	fmt.Fprintf(tw, "failover (last heartbeat to the successor's first poll of each device)\tp50 %s, max %s over %d crashes (%d of the leader)\n", res.FailoverP50, res.FailoverMax, nFail, res.LeaderCrashes)
	fmt.Fprintf(tw, "devices moved when a member joins\t%.1f (its fair share: %.1f of %d)\n", res.MovedOnJoin, res.FairShare, nDevices)
	return tw.Flush()
}
