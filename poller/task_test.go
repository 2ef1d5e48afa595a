package poller_test

import (
	"context"
	"net/netip"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nuid"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/internal/freeport"
	"github.com/meshmon/meshmon/poller"
	"github.com/meshmon/meshmon/sim"
)

// runTask runs req at p and returns its replies.
func runTask(t *testing.T, p *poller.Poller, req meshmon.TaskRequest) ([]meshmon.TaskReply, error) {
	t.Helper()
	req.ID, req.Site, req.By = nuid.Next(), "lab", "ann"
	if req.Timeout == 0 {
		req.Timeout = meshmon.Duration(30 * time.Second)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(req.Timeout))
	defer cancel()
	var mu sync.Mutex
	var out []meshmon.TaskReply
	err := p.Task(ctx, req, func(r meshmon.TaskReply) error {
		mu.Lock()
		out = append(out, r)
		mu.Unlock()
		return nil
	})
	return out, err
}

// TestPollNowPublishes: a poll-now's readings go out as a scheduled
// poll's do, on the device's metric subjects, under message ids of their
// own, besides coming back in the reply.
func TestPollNowPublishes(t *testing.T) {
	e := newEnv(t, 1, "127.74.0.1")
	p, _ := e.runPoller(nil)
	dev := e.sim.Agents()[0].Name()
	var replies []meshmon.TaskReply
	eventually.NoError(t, 20*time.Second, "poll-now of "+dev, func() (err error) {
		replies, err = runTask(t, p, meshmon.TaskRequest{Verb: meshmon.TaskPollNow, Device: dev})
		return err
	})
	var sys *meshmon.Sample
	for _, r := range replies {
		for i, s := range r.Samples {
			if s.Check == "system" {
				sys = &r.Samples[i]
			}
		}
	}
	if sys == nil || sys.Device != dev || sys.Site != "lab" || sys.Poller != "p1" {
		t.Fatalf("poll-now of %s: no system sample of its own in %+v", dev, replies)
	}
	eventually.NoError(t, 20*time.Second, "the poll-now's system sample in METRICS", func() error {
		for _, s := range e.metrics("mx.lab." + dev + ".system") {
			if s.Time.Equal(sys.Time) {
				return nil
			}
		}
		return errNotYet
	})
	// The scheduled polls go on after it (the device polls every second).
	n := len(e.metrics("mx.lab." + dev + ".system"))
	eventually.True(t, 20*time.Second, "scheduled polls after the poll-now", func() bool {
		return len(e.metrics("mx.lab."+dev+".system")) >= n+2
	})
}

var errNotYet = errorString("not yet")

type errorString string

func (e errorString) Error() string { return string(e) }

// TestDiscoverSNMPWithoutPing: an agent behind a filter that drops ICMP
// echo requests (iptables, as root) is missed by a discovery's ICMP sweep
// and found with SNMPWithoutPing, as an SNMP-only candidate.
func TestDiscoverSNMPWithoutPing(t *testing.T) {
	ipt := needRootTool(t, "iptables")
	e := newEnv(t, 1, "127.75.0.1")
	p, _ := e.runPoller(nil)
	port, err := freeport.Port("udp")
	if err != nil {
		t.Fatal(err)
	}
	cfg := sim.DefaultConfig()
	cfg.Agents, cfg.BaseAddr, cfg.Port, cfg.NamePrefix = 3, netip.MustParseAddr("127.75.1.1"), port, "hid"
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	hidden := s.Agents()[1]
	rule := []string{"INPUT", "-d", hidden.Addr().Addr().String(), "-p", "icmp", "-j", "DROP"}
	if out, err := exec.Command(ipt, append([]string{"-I"}, rule...)...).CombinedOutput(); err != nil {
		t.Fatalf("iptables: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command(ipt, append([]string{"-D"}, rule...)...).Run() })

	discover := func(withoutPing bool) map[string]meshmon.Candidate {
		t.Helper()
		rs, err := runTask(t, p, meshmon.TaskRequest{Verb: meshmon.TaskDiscover, CIDR: "127.75.1.0/29", Port: port,
			Rate: meshmon.DiscoverMaxRate, SNMPWithoutPing: withoutPing,
			Credentials: []meshmon.SNMP{{Version: meshmon.SNMPv2c, Community: "public"}}})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]meshmon.Candidate{}
		for _, r := range rs {
			for _, c := range r.Candidates {
				if c.SNMP { // (every loopback address answers ICMP)
					out[c.Address] = c
				}
			}
		}
		return out
	}
	addr := hidden.Addr().Addr().String()
	got := discover(false)
	if _, ok := got[addr]; ok || len(got) != 2 {
		t.Fatalf("discovery with the ICMP sweep: %d SNMP candidates %v; want the 2 agents that answer pings", len(got), got)
	}
	got = discover(true)
	if c, ok := got[addr]; !ok || !c.SNMP || c.ICMP || c.SysName != hidden.Name() || len(got) != 3 {
		t.Fatalf("discovery with SNMP without ping: %d SNMP candidates; %s: %+v", len(got), addr, c)
	}
}
