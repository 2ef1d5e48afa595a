package poller_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/poller"
	"github.com/meshmon/meshmon/storage"
)

// TestPollerRetriesAfterReconnect holds the poller's batch in flight (the
// peer has no EVENTS stream, and a subscriber takes the batch and never
// acknowledges it), then stops the peer and starts it again on the same
// address. The publish timeout (and the publisher's ack wait) is ten minutes and the test waits at
// most one for the spool to drain: it drains only if the batch in flight
// when the connection dropped is sent again once the connection is back,
// not after its timeout. Every message is stored once (the simulated
// device's own events besides).
func TestPollerRetriesAfterReconnect(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1, "127.91.2.1")
	const n = 20_000
	store, err := storage.Open(e.store, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	msgs := make([]meshmon.Message, 0, 1000)
	for i := range n {
		msgs = append(msgs, meshmon.Message{Stream: meshmon.StreamEvents, Site: "lab", Device: fmt.Sprintf("d%d", i%13), Kind: meshmon.KindNodeDown,
			ID: fmt.Sprintf("rc-%d", i), Data: make([]byte, 256)})
		if len(msgs) == cap(msgs) {
			if err := store.Commit(msgs, nil); err != nil {
				t.Fatal(err)
			}
			msgs = msgs[:0]
		}
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}

	// The black hole: no EVENTS stream, and a subscriber that takes the
	// poller's batch and never acknowledges it.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := e.js.DeleteStream(ctx, bus.EventsStream); err != nil {
		t.Fatal(err)
	}
	hole, err := nats.Connect(e.url)
	if err != nil {
		t.Fatal(err)
	}
	defer hole.Close()
	taken := make(chan struct{}, 1)
	if _, err := hole.Subscribe("ev.>", func(*nats.Msg) {
		select {
		case taken <- struct{}{}:
		default:
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := hole.Flush(); err != nil {
		t.Fatal(err)
	}

	e.ackWait = 10 * time.Minute
	p, _ := e.runPoller(func(c *poller.Config) { c.PublishTimeout = 10 * time.Minute })
	select {
	case <-taken:
	case <-ctx.Done():
		t.Fatal("no batch reached the peer")
	}
	hole.Close()
	// The peer makes EVENTS again when it starts.
	listen := e.url[len("nats://"):]
	e.peer.Close()
	e.peer = startPeer(t, e.dir, listen)
	eventually.True(t, time.Minute, "the spool drained after the peer came back", func() bool { return p.Stats().Spooled == 0 })

	s, err := e.js.Stream(ctx, bus.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := make(map[string]bool, n)
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		id := m.Header.Get(jetstream.MsgIDHeader)
		if seen[id] {
			t.Fatalf("%s stored twice", id)
		}
		seen[id] = true
	}
	for i := range n {
		if id := fmt.Sprintf("rc-%d", i); !seen[id] {
			t.Fatalf("%s is missing", id)
		}
	}
}
