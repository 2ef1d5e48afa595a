package peer

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/alarm"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/internal/proccpu"
	"github.com/meshmon/meshmon/tenancy"
	"github.com/meshmon/meshmon/tenancy/provision"
)

// BenchmarkTenantWorkers measures what the per-tenant workers cost a
// central peer in operator mode: MESHMON_BENCH_TENANTS tenants (100 by
// default) made as 'tenant create' makes them, with and without the
// workers; once every tenant's workers have made their streams, the
// streams and consumers of the server, the heap, and the CPU the idle
// process uses over 10 s. Run with -benchtime 1x:
//
//	MESHMON_BENCH_TENANTS=300 go test -run x -bench TenantWorkers -benchtime 1x ./peer
func BenchmarkTenantWorkers(b *testing.B) {
	n := 100
	if v, err := strconv.Atoi(os.Getenv("MESHMON_BENCH_TENANTS")); err == nil && v > 0 {
		n = v
	}
	for _, workers := range []bool{false, true} {
		b.Run(fmt.Sprintf("tenants=%d/workers=%v", n, workers), func(b *testing.B) {
			for range b.N {
				benchTenantWorkers(b, n, workers)
			}
		})
	}
}

func benchTenantWorkers(b *testing.B, n int, workers bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	dir := b.TempDir()
	st, err := tenancy.Init(filepath.Join(dir, "keys"), "bench")
	if err != nil {
		b.Fatal(err)
	}
	trust, err := st.Trust()
	if err != nil {
		b.Fatal(err)
	}
	tb, _ := json.Marshal(trust)
	if err := os.WriteFile(filepath.Join(dir, "trust.json"), tb, 0o644); err != nil {
		b.Fatal(err)
	}
	const disk = 4 << 30 // NOTIFY_LOG reserves 256 MiB beside EVENTS and METRICS (45% each)
	cfg := DefaultConfig()
	cfg.Insecure, cfg.Role, cfg.Name, cfg.Listen = true, RoleCentral, "bench-central", "127.0.0.1:0"
	cfg.DataDir, cfg.Trust, cfg.MaxStore, cfg.NoTenantWorkers = filepath.Join(dir, "central"), filepath.Join(dir, "trust.json"), int64(n+1)*disk, !workers
	p, err := New(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	dial := func(creds []byte) (*nats.Conn, error) {
		auth, err := tenancy.CredsOption(creds)
		if err != nil {
			return nil, err
		}
		return nats.Connect(p.ClientURL(), auth, nats.Timeout(30*time.Second)) // a server busy with the workers of many tenants
	}
	sysCreds, err := st.SystemCreds(0)
	if err != nil {
		b.Fatal(err)
	}
	sys, err := dial(sysCreds)
	if err != nil {
		b.Fatal(err)
	}
	defer sys.Close()
	lim := tenancy.DefaultLimits()
	lim.DiskBytes = disk
	start := time.Now()
	for i := range n {
		// A create that fails (a new account's JetStream not ready yet
		// on a busy server) is made again under another name.
		var err error
		var tn tenancy.Tenant
		for try := range 3 {
			cctx, c := context.WithTimeout(ctx, 2*time.Minute)
			tn, _, err = provision.Create(cctx, st, sys, dial, fmt.Sprintf("t%05d-%d", i, try), lim, 1)
			c()
			if err == nil {
				break
			}
			b.Logf("tenant %d, try %d: %v", i, try+1, err)
		}
		if err != nil {
			b.Fatalf("tenant %d: %v", i, err)
		}
		if workers {
			// A tenant's workers start at its first event.
			firstEvent(b, p, tn.Account)
		}
	}
	created := time.Since(start)
	b.Logf("%d tenants created in %s", n, created.Round(time.Millisecond))
	if workers {
		eventually.True(b, 20*time.Minute, "every tenant's ALARMS stream and notify consumer", func() bool {
			s, c := jsCount(p.Server(), alarm.Stream)
			l, _ := jsCount(p.Server(), "NOTIFY_LOG")
			if s < n || c < n || l < n {
				b.Logf("%d ALARMS, %d consumers, %d NOTIFY_LOG", s, c, l)
			}
			return s >= n && c >= n && l >= n
		})
	}
	ready := time.Since(start)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	streams, consumers := jsCount(p.Server(), "")
	cpu0, t0 := proccpu.Used(), time.Now()
	if f := os.Getenv("MESHMON_BENCH_IDLE_PROFILE"); f != "" {
		w, err := os.Create(f)
		if err != nil {
			b.Fatal(err)
		}
		defer w.Close()
		if err := pprof.StartCPUProfile(w); err != nil {
			b.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	idle := 10 * time.Second
	<-time.After(idle) // the measured window, not synchronisation
	cpu := float64(proccpu.Used()-cpu0) / float64(time.Since(t0))
	b.ReportMetric(float64(streams), "streams")
	b.ReportMetric(float64(consumers), "consumers")
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MiB")
	b.ReportMetric(float64(runtime.NumGoroutine()), "goroutines")
	b.ReportMetric(100*cpu, "idle-cpu-%")
	b.ReportMetric(created.Seconds(), "create-s")
	b.ReportMetric(ready.Seconds(), "ready-s")
}

// jsCount counts the server's streams (named name only, when given) and
// their consumers.
func jsCount(srv *server.Server, name string) (streams, consumers int) {
	info, err := srv.Jsz(&server.JSzOptions{Accounts: true, Streams: true})
	if err != nil {
		return 0, 0
	}
	for _, ad := range info.AccountDetails {
		for _, sd := range ad.Streams {
			if name != "" && sd.Name != name {
				continue
			}
			streams++
			consumers += sd.State.Consumers
		}
	}
	return streams, consumers
}

// firstEvent stores one event in the EVENTS stream of account, over an
// in-process connection the peer signs there (as its own workers' is),
// which is then the stream's subject too.
func firstEvent(b *testing.B, p *Peer, account string) {
	b.Helper()
	signer, err := p.centralSigner()
	if err != nil {
		b.Fatal(err)
	}
	nc, err := signer.conn(p.Server(), account, "bench")
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	ev := meshmon.Event{SpecVersion: "1.0", ID: "bench-1", Type: meshmon.EventTypePrefix + meshmon.KindNodeDown, Time: time.Now().UTC(), Subject: "d1",
		Data: meshmon.EventData{Site: "bench", Device: "d1", Kind: meshmon.KindNodeDown, Check: meshmon.CheckICMP, Severity: meshmon.SeverityCritical}}
	data, _ := json.Marshal(ev)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Central's EVENTS takes events from its sites' streams only: here it
	// takes the bench's subject too, as a site's would.
	s, err := js.Stream(ctx, bus.EventsStream)
	if err != nil {
		b.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.Subjects = []string{"ev.bench.>"}
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		b.Fatalf("EVENTS of %s takes the bench's subject: %v", account, err)
	}
	if _, err := js.Publish(ctx, meshmon.EventSubject("bench", "d1", meshmon.KindNodeDown), data); err != nil {
		b.Fatalf("first event of %s: %v", account, err)
	}
}
