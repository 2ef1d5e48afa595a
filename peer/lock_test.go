package peer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
)

// publishN stores n events through p and returns when all are acknowledged.
func publishN(t *testing.T, p *Peer, from, n int) {
	t.Helper()
	nc, err := p.InProcessConn()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []meshmon.Message
	for i := from; i < from+n; i++ {
		msgs = append(msgs, meshmon.Message{Stream: meshmon.StreamEvents, Site: "hq", Device: "sw1", Kind: "node_down", ID: fmt.Sprint(i), Data: []byte("x")})
	}
	if got, err := bus.NewPublisher(js).PublishBatch(testCtx(t), msgs); err != nil || got != n {
		t.Fatalf("publish: %d of %d acknowledged, %v", got, n, err)
	}
}

func eventCount(t *testing.T, p *Peer) uint64 {
	t.Helper()
	nc, err := p.InProcessConn()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(testCtx(t), bus.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().State.Msgs
}

// TestSecondPeerOnDataDirRefused: two peers on one data dir corrupt the
// JetStream store; the second is refused and the first keeps every
// acknowledged message across a restart.
func TestSecondPeerOnDataDirRefused(t *testing.T) {
	cfg := testConfig(t)
	first := startPeer(t, cfg)
	publishN(t, first, 0, 50)

	for _, site := range []string{"hq", "other"} { // even for another site
		cfg2 := cfg
		cfg2.Name, cfg2.Site = cfg.Name+"-2", site
		second, err := New(cfg2, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = second.Start(testCtx(t))
		second.Close()
		if !errors.Is(err, ErrDataDirLocked) {
			t.Fatalf("second peer on %s: got %v, want ErrDataDirLocked", cfg.DataDir, err)
		}
		if want := fmt.Sprintf("by pid %d", os.Getpid()); !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), cfg.DataDir) {
			t.Fatalf("error %q does not name the data dir and %q", err, want)
		}
	}
	// The first peer still serves, and takes more.
	publishN(t, first, 50, 50)
	first.Close()

	// The lock died with the first peer: a restart takes it and finds
	// every acknowledged message.
	again := startPeer(t, cfg)
	if n := eventCount(t, again); n != 100 {
		t.Fatalf("%d events after restart, want 100", n)
	}
}

// TestDataDirUnusable: a data dir that cannot hold a store fails Start at
// once with the reason, instead of waiting for a listener that never comes.
func TestDataDirUnusable(t *testing.T) {
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	blocked := filepath.Join(t.TempDir(), "store")
	if err := os.MkdirAll(blocked, 0o700); err != nil {
		t.Fatal(err)
	}
	// The store's own directory is a file: the lock works, the store not.
	if err := os.WriteFile(filepath.Join(blocked, "jetstream"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, dir := range map[string]string{"file": file, "under a file": filepath.Join(file, "sub"), "store is a file": blocked} {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.DataDir = dir
			p, err := New(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			err = p.Start(testCtx(t))
			if err == nil || errors.Is(err, ErrNotReady) {
				t.Fatalf("got %v, want an immediate data dir error", err)
			}
			if !strings.Contains(err.Error(), dir) && !strings.Contains(err.Error(), file) {
				t.Fatalf("error %q does not name the path", err)
			}
		})
	}
}

// TestStartCancelled: a cancelled context (Ctrl-C) stops Start, whatever it
// was waiting for.
func TestStartCancelled(t *testing.T) {
	cfg := testConfig(t)
	p, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = p.Start(ctx)
	if !errors.Is(err, ErrNotReady) {
		t.Fatalf("got %v, want ErrNotReady", err)
	}
	// Nothing keeps running: the data dir is free again.
	startPeer(t, cfg)
}
