package peer_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/eventually"
)

// TestCentralKnowsWhichSiteSent: a site's end of its link may deliver any
// subject, and central stores it as delivered: a site peer in hostile hands
// stores an event on another site's subject in its own EVENTS (which
// takes ev.>; only its pollers' permissions hold them to the site's).
// Central's stream tells the site that sent it by the source it came
// through (bus.FromSiteSource), which is what the alarm processor holds an
// event's subject to, and what events tail shows (bus.ShowableEvent): this
// pins that to nats-server's own naming of sources, on real servers.
func TestCentralKnowsWhichSiteSent(t *testing.T) {
	t.Parallel()
	m := startMesh(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, s := range []string{"s1", "s2"} {
		if _, _, err := m.AddSite(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	hostile, honest := m.SiteJS[0], m.SiteJS[1]
	publish := func(js jetstream.JetStream, device string) {
		t.Helper()
		ev := meshmon.Event{Data: meshmon.EventData{Site: "s2", Device: device, Kind: meshmon.KindNodeDown, Check: "icmp"}}
		b, _ := json.Marshal(ev)
		if _, err := js.Publish(ctx, meshmon.EventSubject("s2", device, meshmon.KindNodeDown), b); err != nil {
			t.Fatal(err)
		}
	}
	publish(hostile, "forged")
	publish(honest, "real")

	var central jetstream.Stream
	eventually.NoError(t, 2*time.Minute, "both events at central", func() (err error) {
		central, err = m.CentralJS.Stream(ctx, bus.EventsStream)
		if err == nil && central.CachedInfo().State.Msgs < 2 {
			err = context.DeadlineExceeded
		}
		return err
	})
	seen := 0
	for seq := uint64(1); seen < 2; seq++ {
		msg, err := central.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("seq %d: %v", seq, err)
		}
		var ev meshmon.Event
		if err := json.Unmarshal(msg.Data, &ev); err != nil {
			t.Fatal(err)
		}
		fromS2, sourced := bus.FromSiteSource(msg.Header, bus.EventsStream, "s2")
		fromS1, _ := bus.FromSiteSource(msg.Header, bus.EventsStream, "s1")
		want := ev.Data.Device == "real"
		if !sourced || fromS2 != want || fromS1 == want {
			t.Errorf("%s (%s %q): from s2 %v, from s1 %v, sourced %v; want from s2 %v", ev.Data.Device, bus.HdrStreamSource,
				msg.Header.Get(bus.HdrStreamSource), fromS2, fromS1, sourced, want)
		}
		// What events tail shows of it: the real event, not the forged.
		if err := bus.ShowableEvent(msg.Subject, msg.Header, msg.Data); (err == nil) != want {
			t.Errorf("%s: showable: %v, want shown %v", ev.Data.Device, err, want)
		}
		seen++
	}
	if _, sourced := bus.FromSiteSource(nil, bus.EventsStream, "s2"); sourced {
		t.Error("a message without the header counts as sourced")
	}
}
