package poller

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/internal/eventually"
)

// TestWorkersComeAndGo: the workers start as polls come due, never more
// than Config.Workers at once, and end once idle. Twelve devices behind a
// port that never answers each hold a worker for their timeout; with four
// workers allowed, four poll at a time until all twelve are polled, and
// none is left running after.
func TestWorkersComeAndGo(t *testing.T) {
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	store := testSpool(t)
	cfg := DefaultConfig()
	cfg.Name, cfg.Site, cfg.Workers = "p1", "lab", 4
	p, err := New(cfg, nil, store, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.workerIdle = 100 * time.Millisecond
	port := silent.LocalAddr().(*net.UDPAddr).Port
	var ds []*meshmon.Device
	for i := range 12 {
		ds = append(ds, &meshmon.Device{Name: fmt.Sprintf("quiet%02d", i), Address: "127.0.0.1", Checks: []string{meshmon.CheckSNMP},
			Interval: meshmon.Duration(time.Minute), Timeout: meshmon.Duration(200 * time.Millisecond),
			SNMP: &meshmon.SNMP{Version: meshmon.SNMPv2c, Port: port, Community: "public"}})
	}
	p.upsertAll(ds, false, false, nil) // all due now
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait(); p.recorders.Wait() })
	jobs := make(chan job)
	var mu sync.Mutex
	most := int64(0)
	spawn := func(first job) {
		mu.Lock()
		most = max(most, p.workers.Load())
		mu.Unlock()
		wg.Go(func() { p.work(ctx, jobs, first) })
	}
	wg.Go(func() { p.dispatch(ctx, jobs, spawn) })
	eventually.True(t, 30*time.Second, "twelve polls", func() bool { return p.polls.Load() >= 12 })
	mu.Lock()
	got := most
	mu.Unlock()
	if got != 4 {
		t.Errorf("at most %d workers ran at once; want the 4 allowed (twelve polls were due together)", got)
	}
	eventually.True(t, 10*time.Second, "the idle workers to end", func() bool { return p.workers.Load() == 0 })
}

// TestRecordsWaitApartFromTheWorkers: a poll's record (the spool's
// fsynced commit) waits on a goroutine of its own, so a worker probes the
// next device meanwhile (issue 23: a take-over's checks waited on the
// commits); at most recordsInFlight records wait so, and past that the
// worker records itself. With one worker and every record held, the
// worker probes four devices whose records wait apart and a fifth that
// it records itself; nothing counts as polled or reaches the spool until
// the records go on, and then all six do.
func TestRecordsWaitApartFromTheWorkers(t *testing.T) {
	s := startSim(t, 6, "r", "127.93.10.1")
	store := testSpool(t)
	cfg := DefaultConfig()
	cfg.Name, cfg.Tenant, cfg.Site, cfg.Workers = "p1", "acme", "lab", 1
	p, err := New(cfg, nil, store, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := cap(p.recording); got != 4 {
		t.Fatalf("records in flight for one worker: %d, want 4", got)
	}
	release := make(chan struct{})
	var releaseOnce sync.Once
	letGo := func() { releaseOnce.Do(func() { close(release) }) }
	var mu sync.Mutex
	waiting, most := 0, 0
	p.beforeRecord = func(*observation) {
		mu.Lock()
		waiting++
		most = max(most, waiting)
		mu.Unlock()
		<-release
		mu.Lock()
		waiting--
		mu.Unlock()
	}
	var ds []*meshmon.Device
	for _, a := range s.Agents() {
		ds = append(ds, &meshmon.Device{Name: a.Name(), Address: a.Addr().Addr().String(), Checks: []string{meshmon.CheckSNMP},
			Interval: meshmon.Duration(time.Minute), Timeout: meshmon.Duration(5 * time.Second),
			SNMP: &meshmon.SNMP{Version: meshmon.SNMPv2c, Port: int(a.Addr().Port()), Community: "public"}})
	}
	p.upsertAll(ds, false, false, nil) // all due now
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { letGo(); cancel(); wg.Wait(); p.recorders.Wait() })
	jobs := make(chan job)
	wg.Go(func() {
		p.dispatch(ctx, jobs, func(first job) { wg.Go(func() { p.work(ctx, jobs, first) }) })
	})
	eventually.True(t, 30*time.Second, "five records waiting", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return waiting == 5
	})
	if n := p.polls.Load(); n != 0 {
		t.Errorf("%d polls counted while their records wait; want 0", n)
	}
	if n, _, err := store.SpoolStats(); err != nil || n != 0 {
		t.Errorf("spool holds %d entries (%v) while the records wait; want 0", n, err)
	}
	// The records wait for hold; the polls' durations are their probes'
	// (milliseconds on loopback), not that wait.
	const hold = 2 * time.Second
	held := time.Now()
	eventually.True(t, 30*time.Second, "the records held", func() bool { return time.Since(held) >= hold })
	letGo()
	eventually.True(t, 30*time.Second, "six polls recorded", func() bool { return p.polls.Load() == 6 })
	if n, _, err := store.SpoolStats(); err != nil || n < 6 {
		t.Errorf("spool holds %d entries (%v) after six polls; want at least 6", n, err)
	}
	var m dto.Metric
	if err := p.pollSeconds.Write(&m); err != nil {
		t.Fatal(err)
	}
	if n, sum := m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum(); n != 6 || sum >= hold.Seconds() {
		t.Errorf("poll duration: %d observations summing to %.3f s; want 6 of their probes only, not the %v their records waited", n, sum, hold)
	}
	mu.Lock()
	defer mu.Unlock()
	if most != 5 {
		t.Errorf("at most %d records waited at once; want 5 (4 apart from the one worker, 1 by it)", most)
	}
}
