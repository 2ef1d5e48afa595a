//go:build e2e

package e2e

import (
	"context"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/sim"
)

// outage is how long the peer stays dead in testKillsLoseNothing: 20 s,
// twenty polls of each device spooled (MESHMON_E2E_OUTAGE sets it).
func outage(t *testing.T) time.Duration {
	if v := os.Getenv("MESHMON_E2E_OUTAGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("MESHMON_E2E_OUTAGE: %v", err)
		}
		return d
	}
	return 20 * time.Second
}

// faulter injects a known sequence of faults, device by device, and records
// the events each fault must produce, in order.
type faulter struct {
	mu       sync.Mutex
	agents   []*sim.Agent
	expected map[string][]string // device -> event kinds in order
	ifDown   map[string]bool
	step     int
}

func newFaulter(agents []*sim.Agent) *faulter {
	return &faulter{agents: agents, expected: make(map[string][]string), ifDown: make(map[string]bool)}
}

// next injects one fault on the next device in turn. Devices are visited
// round-robin, so with n devices each sees a fault every n steps: far
// longer than two poll intervals, so every fault is observed on its own.
func (f *faulter) next() {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.agents[f.step%len(f.agents)]
	round := f.step / len(f.agents)
	f.step++
	name := a.Name()
	switch {
	case f.ifDown[name]:
		_ = a.SetIfOper(1, true)
		f.ifDown[name] = false
		f.expected[name] = append(f.expected[name], meshmon.KindIfUp)
	case round%3 == 2:
		a.Reboot()
		f.expected[name] = append(f.expected[name], meshmon.KindReboot)
	default:
		_ = a.SetIfOper(1, false)
		f.ifDown[name] = true
		f.expected[name] = append(f.expected[name], meshmon.KindIfDown)
	}
}

// run injects faults every period until ctx is done.
func (f *faulter) run(ctx context.Context, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f.next()
		}
	}
}

// verify waits until the EVENTS stream holds exactly the expected interface
// and reboot events of every device, in order, each once.
func (f *faulter) verify(t *testing.T, s *site, within time.Duration) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	var last string
	eventually.True(t, within, "every injected fault's event in EVENTS", func() bool {
		got := make(map[string][]string)
		ids := make(map[string]int)
		for _, ev := range s.events("ev.kill.>") {
			ids[ev.ID]++
			switch ev.Data.Kind {
			case meshmon.KindIfUp, meshmon.KindIfDown, meshmon.KindReboot:
				got[ev.Data.Device] = append(got[ev.Data.Device], ev.Data.Kind)
			}
		}
		for id, n := range ids {
			if n > 1 {
				t.Fatalf("event %s is in the stream %d times", id, n)
			}
		}
		for dev, want := range f.expected {
			g := got[dev]
			if len(g) > len(want) {
				t.Fatalf("%s: more events than faults: got %v, want %v", dev, g, want)
			}
			for i := range g {
				if g[i] != want[i] {
					t.Fatalf("%s: events out of order or wrong: got %v, want %v", dev, g, want)
				}
			}
			if len(g) < len(want) {
				last = dev + ": have " + strconv.Itoa(len(g)) + " of " + strconv.Itoa(len(want))
				return false
			}
		}
		return true
	})
	_ = last
}

// testKillsLoseNothing kills the peer with SIGKILL while the poller keeps
// observing injected faults, restarts it, and then kills the poller while it
// drains its spool. Every event observed is in the stream exactly once, in
// order per device.
func testKillsLoseNothing(t *testing.T) {
	// --batch 1 makes draining slow enough to kill the poller in the middle of it.
	s := newSite(t, "kill", "--flap-changes", "0", "--batch", "1")

	scfg := sim.DefaultConfig()
	scfg.Agents, scfg.NamePrefix, scfg.BaseAddr = 10, "kd", mustAddr("127.78.0.1")
	sm, err := sim.New(scfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := sm.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sm.Close() })

	ictx, icancel := context.WithTimeout(ctx, 20*time.Second)
	inv, err := bus.OpenInventory(ictx, s.js)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range sm.Agents() {
		d := meshmon.Device{Name: a.Name(), Address: a.Addr().Addr().String(), Checks: []string{meshmon.CheckSNMP},
			Interval: meshmon.Duration(time.Second), Timeout: meshmon.Duration(300 * time.Millisecond), Retries: 1,
			SNMP: &meshmon.SNMP{Version: meshmon.SNMPv2c, Port: int(a.Addr().Port()), Community: "public"}}
		if _, err := inv.Put(ictx, d); err != nil {
			t.Fatal(err)
		}
	}
	icancel()
	// Every device has been polled once: its baseline state is known.
	for _, a := range sm.Agents() {
		eventually.True(t, 30*time.Second, a.Name()+" first sample", func() bool {
			return len(s.streamMsgs("METRICS", "mx.kill."+a.Name()+".system")) > 0
		})
	}

	f := newFaulter(sm.Agents())
	fctx, fstop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); f.run(fctx, 400*time.Millisecond) }()

	// Phase 1: the peer dies mid-stream and stays away for a while.
	time.Sleep(5 * time.Second) // let faults flow to a live peer first: pacing, not synchronisation
	s.peer.kill()
	time.Sleep(outage(t)) // the outage itself: the poller keeps polling and spooling
	s.startPeer()
	time.Sleep(5 * time.Second) // faults continue after the peer is back
	fstop()
	wg.Wait()
	f.verify(t, s, 60*time.Second)

	// Phase 2: a spool builds up while the peer is away; the poller is
	// killed while draining it, and restarted.
	fctx, fstop = context.WithCancel(ctx)
	wg.Add(1)
	go func() { defer wg.Done(); f.run(fctx, 400*time.Millisecond) }()
	s.peer.kill()
	time.Sleep(15 * time.Second) // outage: the spool grows
	fstop()
	wg.Wait()
	before := streamCount(t, s, "METRICS")
	s.startPeer()
	eventually.True(t, 30*time.Second, "the poller to start draining", func() bool {
		return streamCount(t, s, "METRICS") > before+20
	})
	s.poller.kill()
	mid := streamCount(t, s, "METRICS")
	s.startPoller()
	m := s.poller.waitOutput(`poller started.* spooled=(\d+)`, 10*time.Second)
	if m[1] == "0" {
		t.Errorf("the poller was killed after it had drained its spool; the test did not exercise a kill mid-drain")
	}
	t.Logf("phase 2: the restarted poller found %s messages still spooled", m[1])
	f.verify(t, s, 60*time.Second)
	after := streamCount(t, s, "METRICS")
	// Both shut down cleanly on SIGTERM.
	s.poller.stopClean()
	s.peer.stopClean()
	t.Logf("phase 2: killed the poller when %d samples of the spool were stored; %d by the end", mid-before, after-before)
}

func streamCount(t *testing.T, s *site, stream string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := s.js.Stream(ctx, stream)
	if err != nil {
		return 0
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0
	}
	return info.State.Msgs
}
