package peer

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/alarm"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/bus/alarmbus"
	"github.com/meshmon/meshmon/internal/eventually"
)

// publishStateEvents publishes, at a site, kind events of each device.
func publishStateEvents(t *testing.T, js jetstream.JetStream, site, kind, parent string, devices ...string) {
	t.Helper()
	var msgs []meshmon.Message
	for _, d := range devices {
		now := time.Now().UTC()
		ev := meshmon.Event{SpecVersion: "1.0", ID: fmt.Sprintf("%s-%s-%d", d, kind, now.UnixNano()), Type: meshmon.EventTypePrefix + kind, Time: now, Subject: d,
			Data: meshmon.EventData{Site: site, Device: d, Kind: kind, Check: meshmon.CheckICMP, Severity: meshmon.SeverityCritical}}
		if d != "router" {
			ev.Data.Parent = parent
		}
		b, _ := json.Marshal(ev)
		msgs = append(msgs, meshmon.Message{Stream: meshmon.StreamEvents, Site: site, Device: d, Kind: kind, Time: now, ID: ev.ID, Data: b})
	}
	if got, err := bus.NewPublisher(js).PublishBatch(testCtx(t), msgs); err != nil || got != len(msgs) {
		t.Fatalf("publish at %s: %d of %d, %v", site, got, len(msgs), err)
	}
}

// leaseHolder reads which peer holds the tenant's lease.
func leaseHolder(ctx context.Context, js jetstream.JetStream) (string, error) {
	kv, err := js.KeyValue(ctx, TenantLeaseBucket)
	if err != nil {
		return "", err
	}
	e, err := kv.Get(ctx, TenantLeaseKey)
	if err != nil {
		return "", err
	}
	var l TenantLease
	return l.Peer, json.Unmarshal(e.Value(), &l)
}

// TestTenantWorkersMoveWithTheLease: on a three-peer central, one peer
// holds the lease and runs the alarm processor; a router and the devices
// behind it go down (one alarm, the rest symptoms); the peer holding the
// lease closes; another takes the lease over and applies the recoveries:
// ALARMS holds each alarm's changes once each, in order, every clear
// among them.
func TestTenantWorkersMoveWithTheLease(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-peer central and a site")
	}
	ctx := testCtx(t)
	routes := []string{freeAddr(t), freeAddr(t), freeAddr(t)}
	var central []*Peer
	for i := range 3 {
		cfg := centralConfig(t, fmt.Sprintf("c%d", i+1))
		joinCluster(&cfg, routes, i)
		central = append(central, startPeer(t, cfg))
	}
	waitStreamsReady(t, central...)
	cjs := peerJS(t, central[0])
	eventually.NoError(t, 30*time.Second, "central adding site paris", func() error { return bus.AddSite(ctx, cjs, "paris", time.Now()) })
	var join bus.JoinInfo
	eventually.NoError(t, 20*time.Second, "the join info", func() (err error) {
		join, err = bus.Join(ctx, cjs)
		if err == nil && len(join.Central) < 3 {
			err = fmt.Errorf("%d of 3 central peers published their leaf URL", len(join.Central))
		}
		return err
	})
	pjs := peerJS(t, startPeer(t, siteConfig(t, "paris", join)))
	kids := make([]string, 20)
	for i := range kids {
		kids[i] = fmt.Sprintf("d%02d", i)
	}
	publishStateEvents(t, pjs, "paris", meshmon.KindNodeDown, "router", "router")
	publishStateEvents(t, pjs, "paris", meshmon.KindNodeDown, "router", kids...)

	var holder string
	eventually.NoError(t, 60*time.Second, "the alarms of the storm", func() error {
		as, err := alarmbus.List(ctx, cjs)
		if err != nil {
			return err
		}
		symptoms := 0
		for _, a := range as {
			if a.SymptomOf == "paris.router.icmp" {
				symptoms++
			}
		}
		if len(as) != 21 || symptoms != 20 {
			return fmt.Errorf("%d alarms, %d symptoms; want 21, 20", len(as), symptoms)
		}
		holder, err = leaseHolder(ctx, cjs)
		return err
	})
	i := slices.IndexFunc(central, func(p *Peer) bool { return p.cfg.Name == holder })
	if i < 0 {
		t.Fatalf("lease held by %q, no central peer", holder)
	}
	central[i].Close()
	rest := slices.Delete(slices.Clone(central), i, i+1)
	cjs = peerJS(t, rest[0])
	publishStateEvents(t, pjs, "paris", meshmon.KindNodeUp, "router", "router")
	publishStateEvents(t, pjs, "paris", meshmon.KindNodeUp, "router", kids...)
	eventually.NoError(t, 90*time.Second, "the clears from the lease's next holder", func() error {
		as, err := alarmbus.List(ctx, cjs)
		if err != nil {
			return err
		}
		for _, a := range as {
			if a.State != alarm.StateCleared {
				return fmt.Errorf("alarm %s is %s", a.ID, a.State)
			}
		}
		return nil
	})
	if h, err := leaseHolder(ctx, cjs); err != nil || h == holder {
		t.Fatalf("lease held by %q (%v) after %s closed", h, err, holder)
	}
	// Each alarm's changes once each, in order: the router opened and
	// cleared; each device opened (a symptom), stopped being one, cleared.
	s, err := cjs.Stream(ctx, alarm.Stream)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string][]string{}
	for seq := uint64(1); seq <= s.CachedInfo().State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		var c alarm.Change
		if err := json.Unmarshal(m.Data, &c); err != nil {
			t.Fatal(err)
		}
		if want := uint64(len(seen[c.Alarm.ID]) + 1); c.Alarm.Seq != want {
			t.Fatalf("change %s is seq %d of its alarm, want %d (twice, or one lost)", c.MsgID(), c.Alarm.Seq, want)
		}
		seen[c.Alarm.ID] = append(seen[c.Alarm.ID], c.What)
	}
	if got := seen["paris.router.icmp"]; !slices.Equal(got, []string{"opened", "cleared"}) {
		t.Fatalf("router's changes: %v", got)
	}
	for _, k := range kids {
		if got := seen[alarm.ID("paris", k, "icmp")]; !slices.Equal(got, []string{"opened", "symptom", "cleared"}) {
			t.Fatalf("%s's changes: %v", k, got)
		}
	}
}
