//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/sim"
)

// groupStatus is the part of `meshmon status --json` about the poller group.
type groupStatus struct {
	Group bus.GroupStatus `json:"group"`
}

// TestPollerGroupFailover runs three real poller processes in one site's
// group and kills, hangs and restarts them: after each step every device is
// polled by exactly one live member (the one the assignment names, under
// that assignment's revision), and no device goes unpolled for longer than
// its interval plus the failover time.
func TestPollerGroupFailover(t *testing.T) {
	const interval = 2 * time.Second
	s := newSite(t, "grp", "--flap-changes", "0", "--member-timeout", "1s") // the test's own timing, shorter than the default

	scfg := sim.DefaultConfig()
	scfg.Agents, scfg.NamePrefix, scfg.BaseAddr = 12, "gd", mustAddr("127.79.0.1")
	sm, err := sim.New(scfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := sm.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sm.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	inv, err := bus.OpenInventory(ctx, s.js)
	if err != nil {
		t.Fatal(err)
	}
	var devices []string
	for _, a := range sm.Agents() {
		d := meshmon.Device{Name: a.Name(), Address: a.Addr().Addr().String(), Checks: []string{meshmon.CheckSNMP},
			Interval: meshmon.Duration(interval), Timeout: meshmon.Duration(300 * time.Millisecond), Retries: 1,
			SNMP: &meshmon.SNMP{Version: meshmon.SNMPv2c, Port: int(a.Addr().Port()), Community: "public"}}
		if _, err := inv.Put(ctx, d); err != nil {
			t.Fatal(err)
		}
		devices = append(devices, a.Name())
	}
	cancel()

	dir := t.TempDir()
	members := map[string]*proc{"p1": s.poller}
	startMember := func(name string) {
		data := filepath.Join(dir, name)
		if name == "p1" {
			data = s.pollDir // newSite's poller: a restart keeps its store, so its name
		}
		args := append(append([]string{}, s.global...), "poller", "run", "--site", s.name, "--name", name,
			"--data-dir", data, "--flap-changes", "0", "--member-timeout", "1s")
		members[name] = runMeshmon(t, name, args...)
		members[name].waitOutput(`poller started`, 30*time.Second)
	}
	startMember("p2")
	startMember("p3")

	status := func() bus.GroupStatus {
		var st groupStatus
		if err := json.Unmarshal([]byte(s.cli("status", "--json")), &st); err != nil {
			t.Fatal(err)
		}
		return st.Group
	}
	// settle waits until the group is exactly live, with every device
	// assigned, and every device's newest sample comes from its owner
	// under the current assignment; it returns the leader.
	settle := func(step string, live ...string) string {
		t.Helper()
		slices.Sort(live)
		var why string
		var leader string
		start := time.Now()
		eventually.True(t, 30*time.Second, step+": the group to settle on "+fmt.Sprint(live), func() bool {
			st := status()
			var in []string
			for _, m := range st.Members {
				if m.InGroup {
					in = append(in, m.Name)
				}
			}
			sort.Strings(in)
			if !slices.Equal(in, live) || st.Unassigned != 0 || !slices.Contains(live, st.Leader) {
				why = fmt.Sprintf("members %v, leader %q, %d unassigned", in, st.Leader, st.Unassigned)
				return false
			}
			kv, err := s.js.KeyValue(context.Background(), bus.GroupBucket)
			if err != nil {
				return false
			}
			a, err := bus.ReadAssignment(context.Background(), kv, s.name)
			if err != nil {
				return false
			}
			owners := a.Owners
			for _, d := range devices {
				msgs := s.streamMsgs("METRICS", "mx.grp."+d+".system")
				if len(msgs) == 0 {
					why = d + " has no sample yet"
					return false
				}
				var smp meshmon.Sample
				if json.Unmarshal(msgs[len(msgs)-1].Data, &smp) != nil {
					return false
				}
				if smp.Poller != owners[d] || smp.Assignment != a.Revision {
					why = fmt.Sprintf("%s: newest sample by %s under revision %d; owner %s, revision %d", d, smp.Poller, smp.Assignment, owners[d], a.Revision)
					return false
				}
			}
			leader = st.Leader
			return true
		})
		t.Logf("%s: settled on %v (leader %s) in %s (last wait: %s)", step, live, leader, time.Since(start).Round(100*time.Millisecond), why)
		return leader
	}

	leader := settle("start", "p1", "p2", "p3")
	checkFrom := time.Now()

	// 1. A member that does not lead is killed.
	var victim string
	for _, n := range []string{"p1", "p2", "p3"} {
		if n != leader {
			victim = n
			break
		}
	}
	members[victim].kill()
	var rest []string
	for _, n := range []string{"p1", "p2", "p3"} {
		if n != victim {
			rest = append(rest, n)
		}
	}
	leader = settle("kill a member", rest...)

	// 2. The leader is killed.
	members[leader].kill()
	var last []string
	for _, n := range rest {
		if n != leader {
			last = append(last, n)
		}
	}
	settle("kill the leader", last...)

	// 3. Both come back.
	startMember(victim)
	startMember(leader)
	leader = settle("restart both", "p1", "p2", "p3")

	// 4. Two of three are killed, the leader among them.
	var survivor string
	for _, n := range []string{"p1", "p2", "p3"} {
		if n != leader {
			survivor = n
			break
		}
	}
	for _, n := range []string{"p1", "p2", "p3"} {
		if n != survivor {
			members[n].kill()
		}
	}
	settle("kill two of three", survivor)
	for _, n := range []string{"p1", "p2", "p3"} {
		if n != survivor {
			startMember(n)
		}
	}
	leader = settle("restart two", "p1", "p2", "p3")

	// 5. A member hangs (SIGSTOP) and resumes (SIGCONT).
	hung := survivor
	if hung == leader {
		hung = "p1"
		if hung == leader {
			hung = "p2"
		}
	}
	_ = syscall.Kill(members[hung].cmd.Process.Pid, syscall.SIGSTOP)
	var awake []string
	for _, n := range []string{"p1", "p2", "p3"} {
		if n != hung {
			awake = append(awake, n)
		}
	}
	settle("hang a member", awake...)
	_ = syscall.Kill(members[hung].cmd.Process.Pid, syscall.SIGCONT)
	settle("resume it", "p1", "p2", "p3")

	// No device went unpolled for longer than its interval plus the
	// failover time (2 s) and some slack for a loaded machine, and no
	// sample is stored twice.
	const slack = 1500 * time.Millisecond
	for _, d := range devices {
		ids := map[string]bool{}
		type obs struct {
			at     time.Time
			poller string
		}
		var seen []obs
		for _, m := range s.streamMsgs("METRICS", "mx.grp."+d+".system") {
			id := m.Header.Get("Nats-Msg-Id")
			if ids[id] {
				t.Fatalf("%s: sample %s stored twice", d, id)
			}
			ids[id] = true
			var smp meshmon.Sample
			if err := json.Unmarshal(m.Data, &smp); err != nil {
				t.Fatal(err)
			}
			seen = append(seen, obs{smp.Time, smp.Poller})
		}
		sort.Slice(seen, func(i, j int) bool { return seen[i].at.Before(seen[j].at) })
		for i := 1; i < len(seen); i++ {
			if seen[i].at.Before(checkFrom) {
				continue
			}
			if gap := seen[i].at.Sub(seen[i-1].at); gap > interval+2*time.Second+slack {
				t.Errorf("%s: no sample for %s before %s (poller %s)", d, gap.Round(time.Millisecond), seen[i].at.Format(time.StampMilli), seen[i].poller)
			}
		}
	}
}
