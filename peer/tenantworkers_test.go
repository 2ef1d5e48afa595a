package peer_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/alarm"
	"github.com/meshmon/meshmon/bus/alarmbus"
	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/internal/meshtest"
	"github.com/meshmon/meshmon/peer"
)

// TestTenantWorkersMoveWithTheLease: on a three-peer central, one peer
// holds the lease and runs the alarm processor; a router and the devices
// behind it go down (one alarm, the rest symptoms); the peer holding the
// lease closes; another takes the lease over and applies the recoveries:
// ALARMS holds each alarm's changes once each, in order, every clear
// among them.
func TestTenantWorkersMoveWithTheLease(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("a three-peer central and a site")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	m := startMesh(t, 3, nil)
	central, cjs := m.Central, m.CentralJS
	_, pjs, err := m.AddSite(ctx, "paris")
	if err != nil {
		t.Fatal(err)
	}
	kids := make([]string, 20)
	for i := range kids {
		kids[i] = fmt.Sprintf("d%02d", i)
	}
	peer.PublishStateEvents(t, pjs, "paris", meshmon.KindNodeDown, "router", "router")
	peer.PublishStateEvents(t, pjs, "paris", meshmon.KindNodeDown, "router", kids...)

	var holder string
	eventually.NoError(t, 60*time.Second, "the alarms of the storm", func() error {
		// Each try has its own deadline: a request sent while a stream
		// has no leader goes unanswered.
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
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
		holder, err = peer.LeaseHolder(ctx, cjs)
		return err
	})
	i := slices.IndexFunc(central, func(p *peer.Peer) bool { return p.Config().Name == holder })
	if i < 0 {
		t.Fatalf("lease held by %q, no central peer", holder)
	}
	central[i].Close()
	rest := slices.Delete(slices.Clone(central), i, i+1)
	cjs, closeJS, err := meshtest.JetStream(rest[0])
	if err != nil {
		t.Fatal(err)
	}
	defer closeJS()
	peer.PublishStateEvents(t, pjs, "paris", meshmon.KindNodeUp, "router", "router")
	peer.PublishStateEvents(t, pjs, "paris", meshmon.KindNodeUp, "router", kids...)
	eventually.NoError(t, 90*time.Second, "the clears from the lease's next holder", func() error {
		// Each try has its own deadline: a request sent while a stream
		// has no leader goes unanswered.
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
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
	if h, err := peer.LeaseHolder(ctx, cjs); err != nil || h == holder {
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
