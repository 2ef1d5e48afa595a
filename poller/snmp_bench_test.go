package poller

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/sim"
)

// BenchmarkSNMPPoll polls simulated v2c agents one after the other, the
// system group and a four-row interface table each, with the client pool
// (as the poller runs) and without it (a client connected afresh for every
// poll, as before the pool), and the system group alone (PollSystem, a
// take-over's first poll). Compare B/op and allocs/op:
//
//	go test -run - -bench SNMPPoll -benchmem ./poller
func BenchmarkSNMPPoll(b *testing.B) {
	s := startSim(b, 64, "b", "127.91.0.1")
	var probers []*SNMPProber
	for _, a := range s.Agents() {
		d := meshmon.Device{Name: a.Name(), Address: a.Addr().Addr().String(), Checks: []string{meshmon.CheckSNMP},
			Interval: meshmon.Duration(time.Minute), Timeout: meshmon.Duration(time.Second),
			SNMP: &meshmon.SNMP{Version: meshmon.SNMPv2c, Port: int(a.Addr().Port()), Community: "public"}}
		p, err := NewSNMPProber(d)
		if err != nil {
			b.Fatal(err)
		}
		probers = append(probers, p)
	}
	for _, tc := range []struct {
		name   string
		max    int
		system bool // PollSystem: the first poll of a device taken over
	}{{"pooled", 256, false}, {"unpooled", 0, false}, {"system", 256, true}} {
		b.Run(tc.name, func(b *testing.B) {
			saved := clients.max
			clients.max = tc.max
			b.Cleanup(func() { clients.max = saved })
			b.ReportAllocs()
			ctx := context.Background()
			for i := 0; b.Loop(); i++ {
				poll := probers[i%len(probers)].Poll
				if tc.system {
					poll = probers[i%len(probers)].PollSystem
				}
				if r := poll(ctx); !r.OK {
					b.Fatalf("poll: %s: %v", r.Reason, r.Err)
				}
			}
		})
	}
}

// startSim starts a simulator of n v2c agents named prefix-NNNNN from the
// address base, closed when tb ends.
func startSim(tb testing.TB, n int, prefix, base string) *sim.Sim {
	scfg := sim.DefaultConfig()
	scfg.Agents, scfg.NamePrefix = n, prefix
	scfg.BaseAddr = netip.MustParseAddr(base)
	s, err := sim.New(scfg)
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}
