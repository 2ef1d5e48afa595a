package poller

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/storage"
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
	store, err := storage.Open(filepath.Join(t.TempDir(), "spool.db"), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
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
	t.Cleanup(func() { cancel(); wg.Wait() })
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
