package demo

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/eventually"
)

// TestConfigValidate: a demo of 1 to 10,000 devices, polled every second
// at most.
func TestConfigValidate(t *testing.T) {
	for _, tt := range []struct {
		devices  int
		interval time.Duration
		ok       bool
	}{{1, time.Second, true}, {10000, time.Minute, true}, {0, time.Second, false}, {10001, time.Second, false}, {20, 500 * time.Millisecond, false}} {
		if err := (Config{Devices: tt.devices, Interval: tt.interval}).Validate(); (err == nil) != tt.ok {
			t.Errorf("%d devices every %s: %v", tt.devices, tt.interval, err)
		}
	}
}

// TestDemo: the demo's peer, poller and devices run: the devices are in
// the inventory, the poller publishes their samples to the peer, faults
// are injected, and Close stops it all.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d, err := Start(ctx, Config{Dir: t.TempDir(), Listen: "127.0.0.1:0", Devices: 3, Interval: time.Second, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Conn.Password == "" || d.Conn.CAFile == "" || d.Conn.User != "demo" {
		t.Fatalf("the demo's connection has no password or CA: %+v", d.Conn)
	}
	inv, err := bus.OpenInventory(ctx, d.JS)
	if err != nil {
		t.Fatal(err)
	}
	devs, err := inv.List(ctx)
	if err != nil || len(devs) != 3 {
		t.Fatalf("inventory: %d devices, %v; want 3", len(devs), err)
	}
	eventually.True(t, time.Minute, "the poller publishes the devices' samples", func() bool {
		return d.Poller.Stats().Published > 0
	})
	var faults atomic.Int32
	stop := d.RunFaults(ctx, 100*time.Millisecond, func(string, error) { faults.Add(1) })
	eventually.True(t, 30*time.Second, "faults are injected", func() bool { return faults.Load() > 0 })
	stop()
	d.Close()
	if _, err := inv.List(ctx); err == nil {
		t.Fatal("the inventory still answers after Close")
	}
}

// TestFreeOr: a free address is kept, a taken one becomes the same host
// with a port the kernel picks.
func TestFreeOr(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	taken := l.Addr().String()
	if got := freeOr(taken); got != "127.0.0.1:0" {
		t.Fatalf("freeOr(%s) while it is taken = %s, want 127.0.0.1:0", taken, got)
	}
	l.Close()
	if got := freeOr("127.0.0.1:0"); got != "127.0.0.1:0" {
		t.Fatalf("freeOr of a free address = %s", got)
	}
}
