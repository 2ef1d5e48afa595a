package poller_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/poller"
	"github.com/meshmon/meshmon/storage"
)

// TestDrainerSendsEachOnceInOrder: a Drainer sends a real spool to a real
// peer while more is spooled, with each batch's ack committed behind the
// next send: every message reaches the stream once, in the spool's order,
// and the spool is empty once it is closed.
func TestDrainerSendsEachOnceInOrder(t *testing.T) {
	dir := t.TempDir()
	p := startPeer(t, dir, "127.0.0.1:0")
	nc, err := bus.Connect(bus.ConnConfig{URL: p.ClientURL()})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	store, err := storage.Open(filepath.Join(dir, "spool.db"), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	const n = 1000
	at := time.Date(2026, 12, 3, 19, 0, 0, 0, time.UTC)
	msgs := make([]meshmon.Message, n)
	for i := range msgs {
		m := meshmon.Message{Stream: meshmon.StreamEvents, Site: "lab", Device: fmt.Sprintf("d%d", i%7), Kind: meshmon.KindTrap,
			Time: at.Add(time.Duration(i) * time.Millisecond), Data: []byte(strconv.Itoa(i))}
		m.ID = "drainer-" + strconv.Itoa(i)
		msgs[i] = m
	}
	if err := store.Commit(msgs[:n/2], nil); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	d := poller.NewDrainer(store, bus.NewPublisher(js), 64, 10*time.Second)
	sent, rounds := 0, 0
	for {
		pub, read, err := d.Once(ctx)
		if err != nil {
			t.Fatalf("round %d: %v", rounds, err)
		}
		sent += pub
		rounds++
		if rounds == 3 {
			if err := store.Commit(msgs[n/2:], nil); err != nil {
				t.Fatal(err)
			}
		}
		if read == 0 {
			break
		}
	}
	d.Close()
	if sent != n {
		t.Fatalf("published %d, want %d", sent, n)
	}
	if spooled, _, err := store.SpoolStats(); err != nil || spooled != 0 {
		t.Fatalf("spooled after Close: %d, %v; want 0", spooled, err)
	}
	s, err := js.Stream(ctx, bus.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		m, err := s.GetMsg(ctx, uint64(i+1))
		if err != nil {
			t.Fatalf("stream message %d: %v", i+1, err)
		}
		if string(m.Data) != strconv.Itoa(i) {
			t.Fatalf("stream message %d holds %q, want %d: out of order or twice", i+1, m.Data, i)
		}
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != n {
		t.Fatalf("the stream holds %d messages, want %d", info.State.Msgs, n)
	}
}
