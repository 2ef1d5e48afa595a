package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
)

// failoverSiteName is the site of every size's run (one at a time).
const failoverSiteName = "fb"

// failoverSite is one size's run: a site peer, simulators and a poller
// group, each a process of Meshmon's, and what reached the benchmark of
// the site's samples and of its group's lease and assignment.
type failoverSite struct {
	bc   FailoverConfig
	dir  string // the processes' data and logs
	url  string // the site peer's
	sig  syscall.Signal
	out  func(format string, a ...any) // the per-kill lines
	nc   *nats.Conn
	js   jetstream.JetStream
	mu   sync.Mutex
	proc map[string]*failoverProc

	smu     sync.Mutex
	samples []arrival
	group   []groupEvent // the lease and the assignment as they changed
	watches sync.WaitGroup
}

// failoverProc is a child process and when it exited.
type failoverProc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when it exited
}

// arrival is one sample as it reached the benchmark.
type arrival struct {
	device, poller string
	at, observed   time.Time
	rev            uint64 // the assignment it was polled under
}

var peerReady = regexp.MustCompile(`ready on (\S+)`)

// start runs Meshmon with args, its output in <name>.log, and waits for
// a line matching ready (when not nil); it returns the line's first
// submatch, if any.
func (s *failoverSite) start(ctx context.Context, name string, ready *regexp.Regexp, args ...string) (string, error) {
	f, err := os.OpenFile(filepath.Join(s.dir, name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return "", err
	}
	cmd := exec.Command(s.bc.Meshmon, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return "", fmt.Errorf("start %s: %w", name, err)
	}
	p := &failoverProc{cmd: cmd, done: make(chan struct{})}
	s.mu.Lock()
	s.proc[name] = p
	s.mu.Unlock()
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	if ready == nil {
		return "", nil
	}
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); {
		out, _ := os.ReadFile(f.Name())
		if m := ready.FindSubmatch(out); m != nil {
			if len(m) > 1 {
				return string(m[1]), nil
			}
			return "", nil
		}
		select {
		case <-p.done:
			return "", fmt.Errorf("%s exited: %s", name, out)
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return "", fmt.Errorf("%s: no %q within 2 minutes", name, ready)
}

// signal sends sig to name; unless it is SIGSTOP, name is no longer
// one of the site's processes. It returns the process (nil if none).
func (s *failoverSite) signal(name string, sig syscall.Signal) *failoverProc {
	s.mu.Lock()
	p := s.proc[name]
	if sig != sigStop {
		delete(s.proc, name)
	}
	s.mu.Unlock()
	if p != nil {
		_ = p.cmd.Process.Signal(sig)
	}
	return p
}

// stopAll SIGKILLs every process and waits for them to exit.
func (s *failoverSite) stopAll() {
	s.mu.Lock()
	names := make([]string, 0, len(s.proc))
	for n := range s.proc {
		names = append(names, n)
	}
	s.mu.Unlock()
	for _, n := range names {
		if p := s.signal(n, syscall.SIGKILL); p != nil {
			<-p.done
		}
	}
}

func (s *failoverSite) global() []string {
	return []string{"--log-level", "info", "--server", s.url}
}

// startPeer starts the site peer on a port of its choosing and connects
// to it.
func (s *failoverSite) startPeer(ctx context.Context) error {
	url, err := s.start(ctx, "peer", peerReady, "--log-level", "warn", "peer", "run", "--insecure", "--site", failoverSiteName,
		"--listen", "127.0.0.1:0", "--data-dir", filepath.Join(s.dir, "peer"))
	if err != nil {
		return err
	}
	s.url = url
	if s.nc, err = nats.Connect(url); err != nil {
		return err
	}
	s.js, err = jetstream.New(s.nc)
	return err
}

func (s *failoverSite) startPoller(ctx context.Context, name string) error {
	args := append(s.global(), "poller", "run", "--site", failoverSiteName, "--name", name, "--data-dir", filepath.Join(s.dir, name), "--flap-changes", "0")
	if s.bc.Workers > 0 {
		args = append(args, "--workers", strconv.Itoa(s.bc.Workers))
	}
	if s.bc.Heartbeat > 0 {
		args = append(args, "--heartbeat", s.bc.Heartbeat.String())
	}
	if s.bc.MemberTimeout > 0 {
		args = append(args, "--member-timeout", s.bc.MemberTimeout.String())
	}
	args = append(args, s.bc.PollerArgs...)
	_, err := s.start(ctx, name, regexp.MustCompile(`poller started`), args...)
	return err
}

// restartPoller starts name again once its killed process has exited
// (one process per data directory).
func (s *failoverSite) restartPoller(ctx context.Context, name string, p *failoverProc) error {
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		return fmt.Errorf("%s did not exit within a minute of its signal", name)
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.startPoller(ctx, name)
}

// follow records every system sample of the site as it arrives.
func (s *failoverSite) follow() (*nats.Subscription, error) {
	return s.nc.Subscribe("mx."+failoverSiteName+".>", func(m *nats.Msg) {
		at := time.Now()
		var x meshmon.Sample
		if json.Unmarshal(m.Data, &x) == nil && x.Check == "system" {
			s.smu.Lock()
			s.samples = append(s.samples, arrival{x.Device, x.Poller, at, x.Time, x.Assignment})
			s.smu.Unlock()
		}
	})
}

// forget drops the samples recorded so far.
func (s *failoverSite) forget() {
	s.smu.Lock()
	s.samples = s.samples[:0]
	s.smu.Unlock()
}

// startSims starts sims simulator processes sharing devices, and waits
// until the inventory holds them all: the pollers start on the whole
// inventory, one assignment rather than one a device added (10,000 of
// those did not settle in minutes).
func (s *failoverSite) startSims(ctx context.Context, size FailoverSize, sims int) error {
	per := (size.Devices + sims - 1) / sims
	for i := range sims {
		n := min(per, size.Devices-i*per)
		base := fmt.Sprintf("127.%d.0.1", 90+i)
		if _, err := s.start(ctx, fmt.Sprintf("sim%d", i+1), nil, append(s.global(), "sim", "--agents", strconv.Itoa(n), "--base-addr", base,
			"--name-prefix", fmt.Sprintf("s%d", i+1), "--versions", "2c", "--add-devices", "--interval", size.Interval.String())...); err != nil {
			return err
		}
	}
	return s.waitInventory(ctx, size.Devices)
}

// waitInventory waits until the site's inventory holds n devices (n keys:
// a put retried after a timeout may have stored two values of one).
func (s *failoverSite) waitInventory(ctx context.Context, n int) error {
	var have int
	for deadline := time.Now().Add(15 * time.Minute); time.Now().Before(deadline); {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		kv, err := s.js.KeyValue(rctx, bus.DevicesBucket)
		if err == nil {
			var keys jetstream.KeyLister
			if keys, err = kv.ListKeys(rctx); err == nil {
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
		if err := waitCtx(ctx, time.Second); err != nil {
			return err
		}
	}
	return fmt.Errorf("%d of %d devices in the inventory after 15 minutes", have, n)
}

// assignment reads the group's assignment and who holds its lease.
func (s *failoverSite) assignment(ctx context.Context) (meshmon.Assignment, string, error) {
	kv, err := s.js.KeyValue(ctx, bus.GroupBucket)
	if err != nil {
		return meshmon.Assignment{}, "", err
	}
	var leader string
	if e, err := kv.Get(ctx, bus.GroupLeaderKey(failoverSiteName)); err == nil {
		var l bus.LeaderLease
		if json.Unmarshal(e.Value(), &l) == nil {
			leader = l.Name
		}
	}
	a, err := bus.ReadAssignment(ctx, kv, failoverSiteName)
	return a, leader, err
}

// settle waits until the assignment names exactly the members and all n
// devices, the lease is held by one of them, and every device was
// sampled by its owner since then.
func (s *failoverSite) settle(ctx context.Context, members []string, n int) (meshmon.Assignment, string, error) {
	members = slices.Sorted(slices.Values(members))
	var why string
	for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		a, leader, err := s.assignment(rctx)
		cancel()
		switch {
		case err != nil:
			why = err.Error()
		case !slices.Equal(a.Members, members) || len(a.Owners) != n || !slices.Contains(members, leader):
			why = fmt.Sprintf("members %v, %d devices, leader %q", a.Members, len(a.Owners), leader)
		default:
			seen := s.sampledByOwner(a, a.Time)
			if seen == n {
				return a, leader, nil
			}
			why = fmt.Sprintf("%d of %d devices sampled by their owner since the assignment", seen, n)
		}
		if err := waitCtx(ctx, 200*time.Millisecond); err != nil {
			return meshmon.Assignment{}, "", err
		}
	}
	return meshmon.Assignment{}, "", errors.New("the group did not settle within 5 minutes: " + why)
}

// sampledByOwner counts the devices of a that their owner in a sampled
// (the sample's own time) after since.
func (s *failoverSite) sampledByOwner(a meshmon.Assignment, since time.Time) int {
	s.smu.Lock()
	defer s.smu.Unlock()
	seen := map[string]bool{}
	for _, x := range s.samples {
		if x.observed.After(since) && a.Owners[x.device] == x.poller {
			seen[x.device] = true
		}
	}
	return len(seen)
}
