package main

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/peer"
)

// TestStatusAndReplayLeaveNoConsumer: `status` and `events tail
// --no-follow`, run again and again as a NOC script would, leave no
// consumer behind on any stream (a stream takes 1,000).
func TestStatusAndReplayLeaveNoConsumer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := peer.DefaultConfig()
	cfg.Name, cfg.Site, cfg.Listen, cfg.DataDir, cfg.Insecure = "status-test", "hq", "127.0.0.1:0", t.TempDir(), true
	p, err := peer.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	nc, err := nats.Connect(p.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.WaitJetStream(ctx, js); err != nil {
		t.Fatal(err)
	}
	msgs := make([]meshmon.Message, 20)
	for i := range msgs {
		msgs[i] = meshmon.Message{Stream: meshmon.StreamEvents, Site: "hq", Device: "d1", Kind: meshmon.KindTrap, ID: fmt.Sprint("m", i), Data: []byte(`{}`)}
	}
	if _, err := bus.NewPublisher(js).PublishBatch(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	consumers := func() map[string]int {
		t.Helper()
		out := map[string]int{}
		for info := range js.ListStreams(ctx).Info() {
			out[info.Config.Name] = info.State.Consumers
		}
		return out
	}
	before := consumers()

	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	stdout := os.Stdout
	os.Stdout = devnull
	defer func() { os.Stdout = stdout }()
	const runs = 30
	for i := range runs {
		for _, args := range [][]string{
			{"status", "--json"},
			{"events", "tail", "--since", "1h", "--no-follow", "--json"},
			{"events", "tail", "--since", "1h", "--no-follow", "--device", "d1"},
		} {
			if err := newApp().Run(append([]string{"meshmon", "--server", p.ClientURL()}, args...)); err != nil {
				t.Fatalf("run %d: %v: %v", i, args, err)
			}
			// Read at once, not polled: the command waits for its
			// consumer's removal before it returns (a removal left in
			// flight went with the connection, and the consumer stayed
			// its 5 s).
			if after := consumers(); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Fatalf("consumers per stream: %v before, %v after run %d of %v", before, after, i, args)
			}
		}
	}
}
