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
		}
	}
	os.Stdout = stdout
	// The removals are asked for without waiting for their answers.
	deadline := time.Now().Add(2 * time.Second) // within the 5 s a consumer lingers
	for after := consumers(); fmt.Sprint(after) != fmt.Sprint(before); after = consumers() {
		if time.Now().After(deadline) {
			t.Fatalf("consumers per stream: %v before %d runs of status and events tail, %v after", before, runs, after)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCentralLinkLine: a site's link to central as status prints it.
func TestCentralLinkLine(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	seven, zero := uint64(7), uint64(0)
	for _, tt := range []struct {
		l    bus.CentralLink
		want string
	}{
		{bus.CentralLink{State: bus.LinkDown, LastAck: now.Add(-90 * time.Second), Events: &seven, Samples: &zero},
			"link to central: down, central last acknowledged an event 1m30s ago; not yet at central: 7 events, 0 samples"},
		{bus.CentralLink{State: bus.LinkUp, Events: &zero, Samples: &zero},
			"link to central: up, central has acknowledged no event yet; not yet at central: 0 events, 0 samples"},
		{bus.CentralLink{State: bus.LinkDown, Since: now.Add(-45 * time.Second), LastAck: now.Add(-50 * time.Second), Events: &seven, Samples: &zero},
			"link to central: down since 2026-01-02 03:03:20 UTC (45s ago), central last acknowledged an event 50s ago; not yet at central: 7 events, 0 samples"},
		{bus.CentralLink{State: bus.LinkUp, Since: now.Add(-time.Hour), Events: &zero, Samples: &zero, Peers: []bus.PeerLink{
			{Peer: "paris-1", State: bus.LinkUp, Since: now.Add(-time.Hour)}, {Peer: "paris-2", State: bus.LinkDown, Since: now.Add(-time.Minute)}}},
			"link to central: up since 2026-01-02 02:04:05 UTC (1h0m0s ago), central has acknowledged no event yet; not yet at central: 0 events, 0 samples; members' links: paris-1 up since 2026-01-02 02:04:05 UTC (1h0m0s ago), paris-2 down since 2026-01-02 03:03:05 UTC (1m0s ago)"},
		{bus.CentralLink{State: bus.LinkUnknown},
			"link to central: unknown, central has acknowledged no event yet; not yet at central: unknown events, unknown samples"},
	} {
		if got := centralLinkLine(tt.l, now); got != tt.want {
			t.Errorf("got  %q\nwant %q", got, tt.want)
		}
	}
}
