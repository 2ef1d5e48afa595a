// Command failover measures a poller group's failover with real processes,
// as issue 23's table does: one site peer, `meshmon sim --add-devices`,
// three `meshmon poller run` processes; the leader (or another member) is
// SIGKILLed, and the time from the kill to each of its devices' first
// sample from a survivor is read from mx.<site>.> as the samples arrive.
//
//	go build -o /tmp/meshmon ./cmd/meshmon
//	go run ./test/failover -meshmon /tmp/meshmon -devices 1500 -interval 5s -kills 3
//
// It prints one line per kill, with its phases (when the lease passed on
// and the next assignment came, when each survivor took the devices over
// and read their last states, when they were polled), and, at the end,
// p50/p95/max over every moved device of every kill. With -soak D it kills
// nothing: it watches the live group for D and counts the devices moved
// from a live poller (soak.go). The processes' logs stay in the printed
// directory with -keep.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"encoding/json"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
)

const (
	site = "fb"
	user = "ops"
	pass = "failover-bench-pw"
)

func main() {
	bin := flag.String("meshmon", "meshmon", "the meshmon binary")
	devices := flag.Int("devices", 60, "simulated devices")
	sims := flag.Int("sims", 1, "simulator processes sharing the devices (open files: 20,000 per process)")
	interval := flag.Duration("interval", time.Second, "the devices' poll interval")
	pollers := flag.Int("pollers", 3, "members of the group")
	kills := flag.Int("kills", 3, "SIGKILLs, each followed by a restart of the member killed")
	victim := flag.String("victim", "leader", "whom to kill: leader or member")
	signal := flag.String("signal", "kill", "kill (SIGKILL, then a restart), term (SIGTERM: a graceful leave, then a restart) or stop (SIGSTOP, then SIGCONT: its samples under the assignment before the hand-over are counted)")
	workers := flag.Int("workers", 0, "the pollers' --workers (0: their default)")
	soak := flag.Duration("soak", 0, "instead of killing: watch the group of live members this long and count the devices moved from a live poller (false failovers)")
	heartbeat := flag.Duration("heartbeat", 0, "the pollers' --heartbeat (0: their default)")
	memberTimeout := flag.Duration("member-timeout", 0, "the pollers' --member-timeout (0: their default)")
	extra := flag.String("poller-args", "", "more flags for the pollers, separated by spaces (\"--batch 1024\")")
	keep := flag.Bool("keep", false, "keep the directory of the processes' data and logs")
	flag.Parse()
	dir, err := os.MkdirTemp("", "meshmon-failover-")
	if err != nil {
		fail(err)
	}
	b := &bench{bin: *bin, dir: dir, procs: map[string]*exec.Cmd{}}
	defer func() {
		b.stopAll()
		if !*keep {
			os.RemoveAll(dir)
		} else {
			fmt.Println("logs in", dir)
		}
	}()
	sig, ok := map[string]syscall.Signal{"kill": syscall.SIGKILL, "term": syscall.SIGTERM, "stop": syscall.SIGSTOP}[*signal]
	if !ok {
		fail(fmt.Errorf("-signal %q: use kill, term or stop", *signal))
	}
	b.extra = strings.Fields(*extra)
	b.sig, b.workers, b.soakFor, b.heartbeat, b.memberTimeout = sig, *workers, *soak, *heartbeat, *memberTimeout
	if err := b.run(*devices, *sims, *interval, *pollers, *kills, *victim); err != nil {
		b.stopAll()
		fmt.Fprintln(os.Stderr, "failover:", err, "(logs in "+dir+")")
		*keep = true
		return
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "failover:", err)
	os.Exit(1)
}

type bench struct {
	sig           syscall.Signal
	workers       int
	soakFor       time.Duration
	heartbeat     time.Duration
	memberTimeout time.Duration
	extra         []string // more flags for the pollers
	bin, dir, url string
	mu            sync.Mutex
	procs         map[string]*exec.Cmd
	nc            *nats.Conn
	js            jetstream.JetStream

	smu     sync.Mutex
	samples []arrival
	group   []groupEvent // the lease and the assignment as they changed
}

// groupEvent is one change of the group's lease or assignment as it
// reached the benchmark: who holds the lease ("" when it lapsed), or the
// members of an assignment.
type groupEvent struct {
	at      time.Time
	rev     uint64
	lease   bool
	holder  string
	members []string
}

// watchGroup records each change of the lease and the assignment's index.
func (b *bench) watchGroup(ctx context.Context) error {
	kv, err := b.js.KeyValue(ctx, bus.GroupBucket)
	if err != nil {
		return err
	}
	for _, key := range []string{bus.GroupLeaderKey(site), bus.GroupAssignmentKey(site)} {
		w, err := kv.Watch(ctx, key, jetstream.UpdatesOnly())
		if err != nil {
			return err
		}
		go func() {
			for e := range w.Updates() {
				if e == nil {
					continue
				}
				ev := groupEvent{at: time.Now(), rev: e.Revision(), lease: e.Key() == bus.GroupLeaderKey(site)}
				var v struct {
					Name    string   `json:"name"`
					Members []string `json:"members"`
				}
				if e.Operation() == jetstream.KeyValuePut && json.Unmarshal(e.Value(), &v) == nil {
					ev.holder, ev.members = v.Name, v.Members
				}
				b.smu.Lock()
				b.group = append(b.group, ev)
				b.smu.Unlock()
			}
		}()
	}
	return nil
}

// resume SIGCONTs dead, stopped at killed, and counts what it publishes
// under the assignment it had before it hung: it must publish nothing it
// observed after the hand-over under it.
func (b *bench) resume(cmd *exec.Cmd, dead string, killed time.Time, interval time.Duration) {
	rev, at := b.handover(killed, dead)
	b.smu.Lock()
	b.samples = b.samples[:0]
	b.smu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGCONT)
	time.Sleep(3 * interval)
	stale, late := b.stale(dead, rev, at)
	fmt.Printf("  resumed %s: %d samples observed after the hand-over (revision %d) under an older assignment (%d observed before it, published after the resume)\n", dead, stale, rev, late-stale)
}

// handover is the revision of the first assignment without dead after
// killed, and when it reached the benchmark (0 if none came).
func (b *bench) handover(killed time.Time, dead string) (uint64, time.Time) {
	b.smu.Lock()
	defer b.smu.Unlock()
	for _, e := range b.group {
		if !e.lease && e.at.After(killed) && e.members != nil && !slices.Contains(e.members, dead) {
			return e.rev, e.at
		}
	}
	return 0, time.Time{}
}

// stale counts the samples that dead published after it resumed, observed
// after the hand-over (at) under an older assignment than rev: polled
// under the assignment it had before it hung. (What it observed before the
// hand-over is its to publish.)
func (b *bench) stale(dead string, rev uint64, at time.Time) (stale, late int) {
	b.smu.Lock()
	defer b.smu.Unlock()
	for _, s := range b.samples {
		if s.poller == dead && s.rev < rev {
			late++
			if s.observed.After(at) {
				stale++
			}
		}
	}
	return stale, late
}

// phases says when, after the kill at killed, the lease lapsed and passed
// to another member, and when the first assignment without dead came.
func (b *bench) phases(killed time.Time, dead string) string {
	b.smu.Lock()
	defer b.smu.Unlock()
	var lapsed, won, assigned time.Duration
	for _, e := range b.group {
		d := e.at.Sub(killed)
		switch {
		case d < 0:
		case e.lease && e.holder == "" && lapsed == 0:
			lapsed = d
		case e.lease && e.holder != "" && e.holder != dead && won == 0:
			won = d
		case !e.lease && e.members != nil && !slices.Contains(e.members, dead) && assigned == 0:
			assigned = d
		}
	}
	r := func(d time.Duration) string {
		if d == 0 {
			return "-"
		}
		return d.Round(10 * time.Millisecond).String()
	}
	return fmt.Sprintf("lease lapsed %s, won %s, assignment %s", r(lapsed), r(won), r(assigned))
}

// arrival is one sample as it reached the benchmark.
type arrival struct {
	device, poller string
	at, observed   time.Time
	rev            uint64 // the assignment it was polled under
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// start runs meshmon with args, its output in <name>.log, and waits for a
// line matching ready (when not empty).
func (b *bench) start(name, ready string, args ...string) error {
	f, err := os.OpenFile(filepath.Join(b.dir, name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(b.bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return err
	}
	b.mu.Lock()
	b.procs[name] = cmd
	b.mu.Unlock()
	go func() { _ = cmd.Wait(); f.Close() }()
	if ready == "" {
		return nil
	}
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		out, _ := os.ReadFile(f.Name())
		if strings.Contains(string(out), ready) {
			return nil
		}
		if cmd.ProcessState != nil {
			return fmt.Errorf("%s exited: %s", name, out)
		}
	}
	return fmt.Errorf("%s: no %q within 2 minutes", name, ready)
}

func (b *bench) kill(name string, sig syscall.Signal) {
	b.mu.Lock()
	cmd := b.procs[name]
	delete(b.procs, name)
	b.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Signal(sig)
	}
}

func (b *bench) proc(name string) *exec.Cmd {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.procs[name]
}

func (b *bench) stopAll() {
	b.mu.Lock()
	names := make([]string, 0, len(b.procs))
	for n := range b.procs {
		names = append(names, n)
	}
	b.mu.Unlock()
	for _, n := range names {
		b.kill(n, syscall.SIGKILL)
	}
}

func (b *bench) global() []string {
	return []string{"--log-level", "info", "--server", b.url, "--user", user, "--password", pass}
}

func (b *bench) startPoller(name string) error {
	args := append(b.global(), "poller", "run", "--site", site, "--name", name, "--data-dir", filepath.Join(b.dir, name), "--flap-changes", "0")
	if b.workers > 0 {
		args = append(args, "--workers", strconv.Itoa(b.workers))
	}
	if b.heartbeat > 0 {
		args = append(args, "--heartbeat", b.heartbeat.String())
	}
	if b.memberTimeout > 0 {
		args = append(args, "--member-timeout", b.memberTimeout.String())
	}
	args = append(args, b.extra...)
	return b.start(name, "poller started", args...)
}

func (b *bench) assignment(ctx context.Context) (meshmon.Assignment, string, error) {
	kv, err := b.js.KeyValue(ctx, bus.GroupBucket)
	if err != nil {
		return meshmon.Assignment{}, "", err
	}
	var leader string
	if e, err := kv.Get(ctx, bus.GroupLeaderKey(site)); err == nil {
		var l bus.LeaderLease
		if json.Unmarshal(e.Value(), &l) == nil {
			leader = l.Name
		}
	}
	a, err := bus.ReadAssignment(ctx, kv, site)
	return a, leader, err
}

// settle waits until the assignment names exactly the members and every
// device, the lease is held by one of them, and every device was sampled
// by its owner since then.
func (b *bench) settle(members []string, n int) (meshmon.Assignment, string, error) {
	slices.Sort(members)
	deadline := time.Now().Add(5 * time.Minute)
	var why string
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		a, leader, err := b.assignment(ctx)
		cancel()
		switch {
		case err != nil:
			why = err.Error()
		case !slices.Equal(a.Members, members) || len(a.Owners) != n || !slices.Contains(members, leader):
			why = fmt.Sprintf("members %v, %d devices, leader %q", a.Members, len(a.Owners), leader)
		default:
			b.smu.Lock()
			seen := map[string]bool{}
			for _, s := range b.samples {
				if s.at.After(a.Time) && a.Owners[s.device] == s.poller {
					seen[s.device] = true
				}
			}
			b.smu.Unlock()
			if len(seen) == n {
				return a, leader, nil
			}
			why = fmt.Sprintf("%d of %d devices sampled by their owner since the assignment", len(seen), n)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return meshmon.Assignment{}, "", errors.New("the group did not settle: " + why)
}

func (b *bench) run(devices, sims int, interval time.Duration, npollers, kills int, victim string) error {
	b.url = "nats://127.0.0.1:" + strconv.Itoa(freePort())
	host := strings.TrimPrefix(b.url, "nats://")
	if err := b.start("peer", "ready on", "--log-level", "warn", "peer", "run", "--insecure", "--site", site, "--listen", host,
		"--data-dir", filepath.Join(b.dir, "peer"), "--auth-user", user, "--auth-password", pass); err != nil {
		return err
	}
	var err error
	if b.nc, err = nats.Connect(b.url, nats.UserInfo(user, pass)); err != nil {
		return err
	}
	defer b.nc.Close()
	b.js, _ = jetstream.New(b.nc)
	sub, err := b.nc.Subscribe("mx."+site+".>", func(m *nats.Msg) {
		at := time.Now()
		var s meshmon.Sample
		if json.Unmarshal(m.Data, &s) == nil && s.Check == "system" {
			b.smu.Lock()
			b.samples = append(b.samples, arrival{s.Device, s.Poller, at, s.Time, s.Assignment})
			b.smu.Unlock()
		}
	})
	if err != nil {
		return err
	}
	defer sub.Unsubscribe()
	if err := b.startSims(devices, sims, interval); err != nil {
		return err
	}
	var members []string
	for i := range npollers {
		name := fmt.Sprintf("p%d", i+1)
		members = append(members, name)
		if err := b.startPoller(name); err != nil {
			return err
		}
	}
	a, leader, err := b.settle(members, devices)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := b.watchGroup(wctx); err != nil {
		return err
	}
	fmt.Printf("site %s: %d devices (interval %s), %d pollers, leader %s\n", site, devices, interval, npollers, leader)
	if b.soakFor > 0 {
		return b.soak(wctx, b.soakFor, members, a)
	}
	var all []time.Duration
	for k := range kills {
		dead := leader
		if victim == "member" {
			for _, m := range members {
				if m != leader {
					dead = m
					break
				}
			}
		}
		own := a.Owned(dead)
		b.smu.Lock()
		b.samples = b.samples[:0]
		b.smu.Unlock()
		killed := time.Now()
		cmd := b.proc(dead)
		if b.sig == syscall.SIGSTOP {
			_ = cmd.Process.Signal(syscall.SIGSTOP)
		} else {
			b.kill(dead, b.sig)
		}
		first, polled, err := b.firstSamples(own, dead, killed)
		if err != nil {
			return fmt.Errorf("kill %d: %w", k+1, err)
		}
		var ts []time.Duration
		for _, d := range first {
			ts = append(ts, d)
		}
		slices.Sort(ts)
		all = append(all, ts...)
		fmt.Printf("kill %d at %s: %s (leader %v), %d devices moved: p50 %s p95 %s max %s (%s; first sample %s)\n", k+1, killed.Format("15:04:05.000"),
			dead, dead == leader, len(own), pct(ts, 50), pct(ts, 95), pct(ts, 100), b.phases(killed, dead), pct(ts, 0))
		slices.Sort(polled)
		fmt.Printf("  polled (the samples' time): p50 %s max %s; %s\n", pct(polled, 50), pct(polled, 100), b.survivorPhases(members, dead, killed))
		if b.sig == syscall.SIGSTOP {
			b.resume(cmd, dead, killed, interval)
		} else if err := b.startPoller(dead); err != nil {
			return err
		}
		if a, leader, err = b.settle(members, devices); err != nil {
			return err
		}
	}
	slices.Sort(all)
	fmt.Printf("RESULT %s devices %d interval %s kills %d (%s) moved %d: p50 %s p95 %s max %s\n", b.sig, devices, interval, kills, victim,
		len(all), pct(all, 50), pct(all, 95), pct(all, 100))
	return nil
}

// startSims starts sims simulator processes sharing devices, and waits
// until the inventory holds them all: the pollers start on the whole
// inventory, one assignment rather than one a device added (10,000 of
// those did not settle in minutes).
func (b *bench) startSims(devices, sims int, interval time.Duration) error {
	per := (devices + sims - 1) / sims
	for i := range sims {
		n := min(per, devices-i*per)
		base := fmt.Sprintf("127.%d.0.1", 90+i)
		if err := b.start(fmt.Sprintf("sim%d", i+1), "", append(b.global(), "sim", "--agents", strconv.Itoa(n), "--base-addr", base,
			"--name-prefix", fmt.Sprintf("s%d", i+1), "--versions", "2c", "--add-devices", "--interval", interval.String())...); err != nil {
			return err
		}
	}
	return b.waitInventory(devices)
}

// waitInventory waits until the site's inventory holds n devices (n keys:
// a put retried after a timeout may have stored two values of one).
func (b *bench) waitInventory(n int) error {
	var have int
	for deadline := time.Now().Add(15 * time.Minute); time.Now().Before(deadline); time.Sleep(time.Second) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		kv, err := b.js.KeyValue(ctx, bus.DevicesBucket)
		if err == nil {
			var keys jetstream.KeyLister
			if keys, err = kv.ListKeys(ctx); err == nil {
				have = 0
				for range keys.Keys() {
					have++
				}
			}
		}
		cancel()
		if have >= n {
			return nil
		}
	}
	return fmt.Errorf("%d of %d devices in the inventory after 15 minutes", have, n)
}

// firstSamples waits for the first sample of each of own from another
// poller than dead and returns how long after killed each came.
// It also returns when those samples were observed (their time), after
// killed: the rest is the way from the survivor's spool to the peer.
func (b *bench) firstSamples(own map[string]bool, dead string, killed time.Time) (map[string]time.Duration, []time.Duration, error) {
	first := map[string]time.Duration{}
	var polled []time.Duration
	for deadline := time.Now().Add(2 * time.Minute); len(first) < len(own); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			return nil, nil, fmt.Errorf("%d of %s's %d devices sampled by another member within 2 minutes", len(first), dead, len(own))
		}
		b.smu.Lock()
		for _, s := range b.samples {
			if own[s.device] && s.poller != dead {
				if _, ok := first[s.device]; !ok {
					first[s.device] = s.at.Sub(killed)
					polled = append(polled, s.observed.Sub(killed))
				}
			}
		}
		b.smu.Unlock()
	}
	return first, polled, nil
}

func pct(ts []time.Duration, p int) string {
	if len(ts) == 0 {
		return "-"
	}
	i := min(len(ts)-1, len(ts)*p/100)
	return ts[i].Round(10 * time.Millisecond).String()
}
