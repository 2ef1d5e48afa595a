package notifybus_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/alarm"
	"github.com/meshmon/meshmon/bus/notifybus"
	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/internal/meshtest"
	"github.com/meshmon/meshmon/notify"
	"github.com/meshmon/meshmon/peer"
)

// TestRunFailoverToAnotherCentralPeer: a clustered central (three peers,
// everything R3); the runner on one peer is delivering when that peer
// goes away (its send reaches the receiver, its record cannot be made);
// a runner on another peer takes over. Every change reaches the receiver
// once, the one in flight included: the new runner finds its claim,
// waits for the claim's send to have ended, and logs it uncertain
// instead of sending it again.
func TestRunFailoverToAnotherCentralPeer(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m, err := meshtest.StartMesh(ctx, meshtest.MeshConfig{Dir: t.TempDir(), Prefix: "nf-", Central: 3,
		// The test runs the runners itself, not the peers' own.
		Configure: func(_ int, c *peer.Config) { c.NoTenantWorkers = true }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	nc0, err := m.Central[0].InProcessConn()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc0.Close)
	nc1, err := m.Central[1].InProcessConn()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc1.Close)
	js, err := jetstream.New(nc1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: alarm.Stream, Subjects: []string{"alarm.>"}, Replicas: 3,
		Retention: jetstream.LimitsPolicy, Storage: jetstream.FileStorage, Duplicates: 10 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	st, err := notifybus.Open(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{nc: nc0, js: js, st: st}
	rcv := newReceiver(t, "k")
	e.webhook(t, "hook", rcv.srv.URL, "k", 0, 0)
	e.rule(t, notify.Rule{Name: "all", Channels: []string{"hook"}})
	const n = 30
	now := time.Now().UTC()
	for i := range n {
		c := opened(i, now)
		b, _ := json.Marshal(c)
		if _, err := js.Publish(ctx, alarm.ChangeSubject(c.Alarm), b, jetstream.WithMsgID(c.MsgID())); err != nil {
			t.Fatal(err)
		}
	}
	release, seen := make(chan struct{}), make(chan struct{})
	rcv.mu.Lock()
	rcv.block, rcv.seen = release, seen
	rcv.mu.Unlock()
	// A short send timeout: the claim of the send in flight expires
	// SendTimeout and the margin after it was made.
	cfg := testConfig()
	cfg.SendTimeout, cfg.ClaimMargin = 2*time.Second, 500*time.Millisecond
	cancelA, waitA := e.start(t, cfg)
	select {
	case <-seen:
	case <-time.After(time.Minute):
		t.Fatal("no delivery reached the receiver")
	}
	// The runner's central peer goes away mid-delivery, and the runner
	// with it (its connection closed: no waiting for a reconnect).
	m.Central[0].Close()
	nc0.Close()
	close(release)
	cancelA()
	waitA()

	e.nc = nc1
	e.run(t, cfg)
	eventually.True(t, time.Minute, "every change delivered after the failover", func() bool {
		_, items, _, _ := rcv.snapshot()
		return len(items) == n
	})
	// The claim of the one in flight expires (SendTimeout and the
	// margin): it is logged uncertain, and the outbox empties.
	var uncertain []notifybus.Attempt
	eventually.True(t, time.Minute, "the one in flight logged uncertain, the outbox empty", func() bool {
		log, err := st.Log(ctx, "hook", 0)
		if err != nil {
			return false
		}
		uncertain = uncertain[:0]
		for _, a := range log {
			if a.Outcome == notifybus.OutcomeUncertain {
				uncertain = append(uncertain, a)
			}
		}
		left, err := st.OutboxLen(ctx)
		return err == nil && len(uncertain) == 1 && left == 0
	})
	_, items, byID, _ := rcv.snapshot()
	for id, k := range byID {
		if k != 1 {
			t.Errorf("delivery %s received %d times", id, k)
		}
	}
	for id, k := range items {
		if k != 1 {
			t.Errorf("change %s delivered %d times", id, k)
		}
	}
	if items[uncertain[0].Item] != 1 {
		t.Errorf("the item logged uncertain (%s) was received %d times; want once", uncertain[0].Item, items[uncertain[0].Item])
	}
	t.Logf("%d changes, %d deliveries, none twice; in flight at the failover: %s (%s)", n, len(byID), uncertain[0].Item, uncertain[0].Error)
}

// TestTwoRunnersAtOnceSendEachOnce: two runners of one tenant at once (a
// lease that moved while its old holder still runs), on a slow receiver:
// their claims in the delivery log let each change through once.
func TestTwoRunnersAtOnceSendEachOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rcv := newReceiver(t, "k")
	rcv.delay = 20 * time.Millisecond
	e.webhook(t, "hook", rcv.srv.URL, "k", 0, 0)
	e.rule(t, notify.Rule{Name: "all", Channels: []string{"hook"}})
	const n = 40
	now := time.Now().UTC()
	for i := range n {
		e.publish(t, opened(i, now))
	}
	a, b := testConfig(), testConfig()
	a.Holder, b.Holder = "a", "b"
	e.run(t, a)
	e.run(t, b)
	eventually.True(t, time.Minute, "every change delivered", func() bool {
		_, items, _, _ := rcv.snapshot()
		return len(items) == n
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	eventually.True(t, 30*time.Second, "the outbox empty", func() bool {
		left, err := e.st.OutboxLen(ctx)
		return err == nil && left == 0
	})
	_, items, _, _ := rcv.snapshot()
	for id, k := range items {
		if k != 1 {
			t.Errorf("change %s delivered %d times", id, k)
		}
	}
	log, err := e.st.Log(ctx, "hook", 0)
	if err != nil {
		t.Fatal(err)
	}
	holders := map[string]int{}
	for _, x := range log {
		if x.Outcome == notifybus.OutcomeSending {
			holders[x.Holder[:1]]++
		}
	}
	t.Logf("claims by runner: %v", holders)
}
