//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/sim"
)

// groupSite is a site with its own simulated devices and a poller group of
// three real poller processes, p1 (newSite's), p2 and p3, whose samples
// of the system check it records as they are published.
type groupSite struct {
	*site
	t       *testing.T
	members map[string]*proc
	devices []string

	mu      sync.Mutex
	samples []meshmon.Sample
}

// newGroupSite starts the site name, n devices polled every interval on
// addr and up, and the three pollers with pollerArgs.
func newGroupSite(t *testing.T, name, addr string, n int, interval time.Duration, pollerArgs ...string) *groupSite {
	t.Helper()
	g := &groupSite{site: newSite(t, name, pollerArgs...), t: t, members: map[string]*proc{}}
	g.members["p1"] = g.poller
	sub, err := g.nc.Subscribe("mx."+name+".>", func(m *nats.Msg) {
		var s meshmon.Sample
		if json.Unmarshal(m.Data, &s) == nil && s.Check == "system" {
			g.mu.Lock()
			g.samples = append(g.samples, s)
			g.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })

	scfg := sim.DefaultConfig()
	scfg.Agents, scfg.NamePrefix, scfg.BaseAddr = n, name+"d", mustAddr(addr)
	sm, err := sim.New(scfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := sm.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sm.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	inv, err := bus.OpenInventory(ctx, g.js)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range sm.Agents() {
		d := meshmon.Device{Name: a.Name(), Address: a.Addr().Addr().String(), Checks: []string{meshmon.CheckSNMP},
			Interval: meshmon.Duration(interval), Timeout: meshmon.Duration(300 * time.Millisecond), Retries: 1,
			SNMP: &meshmon.SNMP{Version: meshmon.SNMPv2c, Port: int(a.Addr().Port()), Community: "public"}}
		if _, err := inv.Put(ctx, d); err != nil {
			t.Fatal(err)
		}
		g.devices = append(g.devices, a.Name())
	}
	dir := t.TempDir()
	for _, m := range []string{"p2", "p3"} {
		args := append(append([]string{}, g.global...), "poller", "run", "--site", name, "--name", m, "--data-dir", filepath.Join(dir, m))
		g.members[m] = runMeshmon(t, m, append(args, pollerArgs...)...)
		g.members[m].waitOutput(`poller started`, 30*time.Second)
	}
	return g
}

// assignment reads the group's assignment and its leader.
func (g *groupSite) assignment() (meshmon.Assignment, string) {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := g.js.KeyValue(ctx, bus.GroupBucket)
	if err != nil {
		g.t.Fatal(err)
	}
	var leader string
	if e, err := kv.Get(ctx, bus.GroupLeaderKey(g.name)); err == nil {
		var l bus.LeaderLease
		if json.Unmarshal(e.Value(), &l) == nil {
			leader = l.Name
		}
	}
	a, err := bus.ReadAssignment(ctx, kv, g.name)
	if err != nil {
		return meshmon.Assignment{}, leader
	}
	return a, leader
}

// settle waits until the assignment names exactly members, the lease is
// one of theirs, and every device was sampled by its owner under that
// assignment; it returns the assignment and the leader.
func (g *groupSite) settle(within time.Duration, members ...string) (meshmon.Assignment, string) {
	g.t.Helper()
	slices.Sort(members)
	var a meshmon.Assignment
	var leader string
	eventually.True(g.t, within, "the group to settle on "+g.name+" with "+joinNames(members), func() bool {
		a, leader = g.assignment()
		if !slices.Equal(a.Members, members) || len(a.Owners) != len(g.devices) || !slices.Contains(members, leader) {
			return false
		}
		return len(g.sampledBy(a.Owners, func(s meshmon.Sample) bool { return s.Assignment == a.Revision })) == len(g.devices)
	})
	return a, leader
}

// sampledBy returns the devices of owners with a sample by their owner
// there that ok accepts.
func (g *groupSite) sampledBy(owners map[string]string, ok func(meshmon.Sample) bool) map[string]bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	seen := map[string]bool{}
	for _, s := range g.samples {
		if p, in := owners[s.Device]; in && p == s.Poller && ok(s) {
			seen[s.Device] = true
		}
	}
	return seen
}

// movedFrom waits until every device that a gives to gone was sampled by
// another member, with a sample observed after since, and returns how
// long after since that was.
func (g *groupSite) movedFrom(a meshmon.Assignment, gone string, since time.Time, within time.Duration) time.Duration {
	g.t.Helper()
	own := a.Owned(gone)
	eventually.True(g.t, within, gone+"'s devices to be polled by another member", func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		seen := map[string]bool{}
		for _, s := range g.samples {
			if own[s.Device] && s.Poller != gone && !s.Time.Before(since) {
				seen[s.Device] = true
			}
		}
		return len(seen) == len(own)
	})
	return time.Since(since)
}

func joinNames(ns []string) string {
	b, _ := json.Marshal(ns)
	return string(b)
}

// TestPollerGroupTermHandsOver: a poller stopped with SIGTERM hands its
// devices over at once, a member by removing its heartbeat and the leader
// by resigning its lease too: the others poll them well before the member
// timeout and the lease (10 s each here) could have moved them.
func TestPollerGroupTermHandsOver(t *testing.T) {
	const wait = 10 * time.Second
	g := newGroupSite(t, "gterm", "127.81.0.1", 9, time.Second, "--flap-changes", "0", "--member-timeout", wait.String(), "--group-lease", wait.String())
	a, leader := g.settle(30*time.Second, "p1", "p2", "p3")
	member := "p1"
	for _, m := range []string{"p1", "p2", "p3"} {
		if m != leader {
			member = m
			break
		}
	}
	for _, gone := range []string{member, leader} {
		at := time.Now()
		g.members[gone].stopClean()
		took := g.movedFrom(a, gone, at, wait*7/10)
		t.Logf("SIGTERM to %s (leader %v): its %d devices polled by another member %s later", gone, gone == leader, len(a.Owned(gone)), took.Round(time.Millisecond))
		var rest []string
		for _, m := range a.Members {
			if m != gone {
				rest = append(rest, m)
			}
		}
		a, leader = g.settle(wait*7/10, rest...)
	}
}

// TestPollerGroupStoppedMemberFenced: a member stopped with SIGSTOP loses
// its devices to the others after the member timeout; when it resumes
// (SIGCONT) it publishes nothing it observed after the hand-over under the
// assignment it had before: it is fenced. Its polls made on resuming, due
// while it was stopped, are dropped as superseded.
func TestPollerGroupStoppedMemberFenced(t *testing.T) {
	const interval = time.Second
	g := newGroupSite(t, "gstop", "127.82.0.1", 9, interval, "--flap-changes", "0")
	a, leader := g.settle(30*time.Second, "p1", "p2", "p3")
	for _, hung := range []string{"p1", "p2", "p3"} {
		if hung == leader {
			continue
		}
		pid := g.members[hung].cmd.Process.Pid
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		at := time.Now()
		t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
		var rest []string
		for _, m := range a.Members {
			if m != hung {
				rest = append(rest, m)
			}
		}
		moved, _ := g.settle(15*time.Second, rest...)
		t.Logf("SIGSTOP to %s: its devices moved (revision %d) %s later", hung, moved.Revision, time.Since(at).Round(time.Millisecond))
		// Stopped over two more polls of the others: its own polls are
		// overdue when it resumes.
		polledTwice := time.Now().Add(2 * interval)
		g.movedFrom(a, hung, polledTwice, 10*time.Second)
		if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		back, _ := g.settle(15*time.Second, "p1", "p2", "p3")
		// Its spool is published in order: the samples it made under the
		// assignment that readmitted it came after any it had kept.
		var stale []meshmon.Sample
		g.mu.Lock()
		for _, s := range g.samples {
			if s.Poller == hung && s.Assignment < moved.Revision && !s.Time.Before(moved.Time) {
				stale = append(stale, s)
			}
		}
		g.mu.Unlock()
		for _, s := range stale {
			t.Errorf("%s published %s's sample observed at %s under revision %d, after revision %d moved its devices at %s",
				hung, s.Device, s.Time.Format(time.StampMilli), s.Assignment, moved.Revision, moved.Time.Format(time.StampMilli))
		}
		t.Logf("SIGCONT to %s: back in the group at revision %d; %d stale samples", hung, back.Revision, len(stale))
		return
	}
}
