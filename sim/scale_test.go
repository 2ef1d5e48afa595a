package sim

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// Test10kAgents starts 10,000 agents (10,000 UDP sockets: the open-files
// limit must allow it; Go raises the soft limit to the hard one) and walks
// a sample of them.
func Test10kAgents(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 agents: skipped with -short")
	}
	const n = 10000
	cfg := testConfig(t, n)
	start := time.Now()
	s := startSim(t, cfg)
	t.Logf("started %d agents in %s", n, time.Since(start))
	agents := s.Agents()
	for i := 0; i < n; i += 997 {
		a := agents[i]
		g := client(t, a)
		pdus, err := g.BulkWalkAll(OIDIfXTable)
		if err != nil || len(pdus) != 12 {
			t.Fatalf("agent %s: %d varbinds, %v", a.Name(), len(pdus), err)
		}
		if v := get1(t, g, OIDSysName); string(v.Value.([]byte)) != a.Name() {
			t.Fatalf("agent at %s says it is %q, want %s", a.Addr(), v.Value, a.Name())
		}
	}
	last := agents[n-1]
	g := client(t, last, v3("meshmon", "SHA", "meshmon-auth", "AES", "meshmon-priv"))
	get1(t, g, OIDSysName)
}

// BenchmarkAgentGet measures v2c GETs of the system group against one
// agent from parallel clients.
func BenchmarkAgentGet(b *testing.B) {
	for _, c := range []struct {
		name string
		opts []clientOpt
	}{
		{"v2c", nil},
		{"v3-authPriv", []clientOpt{v3("meshmon", "SHA", "meshmon-auth", "AES", "meshmon-priv")}},
	} {
		b.Run(c.name, func(b *testing.B) {
			s := startSim(b, testConfig(b, 8))
			var next atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				a := s.Agents()[int(next.Add(1))%8]
				g := client(b, a, c.opts...)
				oids := []string{OIDSysName, OIDSysUpTime, OIDIfEntry + ".10.1", OIDIfXEntry + ".6.1"}
				for pb.Next() {
					if _, err := g.Get(oids); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}

// BenchmarkBulkWalk walks ifTable and ifXTable of one agent with GETBULK.
func BenchmarkBulkWalk(b *testing.B) {
	s := startSim(b, testConfig(b, 1))
	g := client(b, s.Agents()[0])
	before := s.Answered()
	b.ResetTimer()
	for b.Loop() {
		for _, root := range []string{OIDIfTable, OIDIfXTable} {
			if _, err := g.BulkWalkAll(root); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(s.Answered()-before)/b.Elapsed().Seconds(), "req/s")
}

// BenchmarkMemoryPer1000Agents reports the Go heap and goroutine stacks a
// started fleet holds per 1,000 agents (kernel socket buffers are not
// included: they are allocated per datagram).
func BenchmarkMemoryPer1000Agents(b *testing.B) {
	const n = 5000
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		cfg := testConfig(b, n)
		s, err := New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		// One agent has served a request, so its buffers are counted too.
		g := client(b, s.Agents()[0])
		_, _ = g.Get([]string{OIDSysName})
		runtime.GC()
		runtime.ReadMemStats(&after)
		used := float64((after.HeapInuse + after.StackInuse) - (before.HeapInuse + before.StackInuse))
		b.ReportMetric(used/n*1000/(1<<20), "MiB/1000agents")
		_ = s.Close()
	}
}
