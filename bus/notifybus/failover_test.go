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
// a runner on another peer takes over. Every change reaches the receiver;
// the one in flight may arrive twice, with the same X-Meshmon-Delivery,
// and no other does.
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
	cancelA, waitA := e.start(t, testConfig())
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
	e.run(t, testConfig())
	eventually.True(t, time.Minute, "every change delivered after the failover", func() bool {
		_, items, _, _ := rcv.snapshot()
		return len(items) == n
	})
	_, items, byID, _ := rcv.snapshot()
	twice := 0
	for id, k := range byID {
		if k > 2 || k == 2 && twice > 0 {
			t.Errorf("delivery %s received %d times", id, k)
		}
		if k == 2 {
			twice++
		}
	}
	for id, k := range items {
		if k > 1 && byID[id+".hook"] != k {
			t.Errorf("change %s delivered %d times under different delivery IDs", id, k)
		}
	}
	t.Logf("%d changes, %d deliveries, %d received twice (the one in flight)", n, len(byID), twice)
}
