package notifybus_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/alarm"
	"github.com/meshmon/meshmon/bus/notifybus"
	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/notify"
)

// fakeClock is a runner's clock that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *fakeClock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// processor folds events into the tenant's alarms with the real alarm.Set
// and publishes each change, then writes the alarm to the alarms bucket,
// in that order, as the alarm processor does.
type processor struct {
	e     *env
	clock *fakeClock
	set   *alarm.Set
	kv    jetstream.KeyValue
	seq   uint64
}

func newProcessor(t *testing.T, e *env, clock *fakeClock) *processor {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := e.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: alarm.Bucket, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	return &processor{e: e, clock: clock, set: alarm.NewSet("acme"), kv: kv}
}

func (p *processor) event(t *testing.T, device, parent, kind string) {
	t.Helper()
	sev := meshmon.SeverityCleared
	if kind == meshmon.KindNodeDown {
		sev = meshmon.SeverityCritical
	}
	now := p.clock.Now()
	ev := meshmon.Event{Time: now, Data: meshmon.EventData{Tenant: "acme", Site: "par", Device: device, Parent: parent,
		Kind: kind, Check: meshmon.CheckICMP, Severity: sev, Message: kind + " " + device}}
	p.seq++
	for _, c := range p.set.Apply(ev, p.seq, now) {
		p.e.publish(t, c)
		b, err := json.Marshal(c.Alarm)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if _, err := p.kv.Put(ctx, c.Alarm.ID, b); err != nil {
			t.Fatal(err)
		}
		cancel()
	}
}

// waitApplied waits until the runner has applied every change published:
// the consumer's ack floor has reached the stream's last message (every
// message of ALARMS is a change). NumPending and NumAckPending are no
// such proof: under load both read 0 before the runner had applied the
// changes just published (its log showed them queued at the clock's next
// value), and a page held from then never came due.
func (e *env) waitApplied(t *testing.T) {
	t.Helper()
	eventually.NoError(t, 30*time.Second, "every change applied", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := e.js.Stream(ctx, alarm.Stream)
		if err != nil {
			return err
		}
		last := s.CachedInfo().State.LastSeq
		c, err := e.js.Consumer(ctx, alarm.Stream, notifybus.Consumer)
		if err != nil {
			return err
		}
		info, err := c.Info(ctx)
		if err != nil {
			return err
		}
		if info.AckFloor.Stream < last || info.NumAckPending > 0 {
			return fmt.Errorf("acknowledged up to %d of %d, %d unacknowledged", info.AckFloor.Stream, last, info.NumAckPending)
		}
		return nil
	})
}

func (e *env) waitOutboxEmpty(t *testing.T) {
	t.Helper()
	eventually.NoError(t, 30*time.Second, "the outbox empty", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		n, err := e.st.OutboxLen(ctx)
		if err == nil && n > 0 {
			err = fmt.Errorf("%d waiting", n)
		}
		return err
	})
}

// TestRunRouterWith50ChildrenPagesOnce: 50 devices behind a router fall
// before it, and come back after it; whichever event comes first, one
// page for the router and its clear reach a real webhook receiver, and
// none for the children. The held pages survive a runner's replacement.
// A child that falls alone still pages, after the settle time, and so
// does its clear.
func TestRunRouterWith50ChildrenPagesOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rcv := newReceiver(t, "k")
	e.webhook(t, "hook", rcv.srv.URL, "k", 0, 0)
	const settle = 10 * time.Second
	e.rule(t, notify.Rule{Name: "all", Channels: []string{"hook"}, Settle: settle})
	clock := &fakeClock{t: time.Now().UTC()}
	cfg := testConfig()
	cfg.Now = clock.Now
	stop := e.run(t, cfg)
	p := newProcessor(t, e, clock)
	child := func(i int) string { return fmt.Sprintf("d%02d", i) }
	itemsOf := func(device string) (n int) {
		msgs, _, _, _ := rcv.snapshot()
		for _, m := range msgs {
			for _, it := range m.Items {
				if it.Alarm.Device == device {
					n++
				}
			}
		}
		return n
	}
	childItems := func() (n int) {
		for i := range 50 {
			n += itemsOf(child(i))
		}
		return n
	}

	// The children fall a poll before the router.
	for i := range 50 {
		p.event(t, child(i), "router", meshmon.KindNodeDown)
	}
	clock.Add(5 * time.Second)
	p.event(t, "router", "", meshmon.KindNodeDown)
	e.waitApplied(t)
	eventually.True(t, 30*time.Second, "the router paged", func() bool { return itemsOf("router") == 1 })
	// Another runner takes over with the children's pages still held.
	stop()
	stop = e.run(t, cfg)
	clock.Add(settle)
	e.waitOutboxEmpty(t)
	if n := childItems(); n != 0 {
		t.Fatalf("children fell before the router: %d child items paged, want 0", n)
	}

	// The router comes back a poll before its children.
	clock.Add(time.Minute)
	p.event(t, "router", "", meshmon.KindNodeUp)
	clock.Add(5 * time.Second)
	for i := range 50 {
		p.event(t, child(i), "router", meshmon.KindNodeUp)
	}
	e.waitApplied(t)
	clock.Add(2 * settle)
	e.waitOutboxEmpty(t)
	eventually.True(t, 30*time.Second, "the router's clear", func() bool { return itemsOf("router") == 2 })
	msgs, items, _, bad := rcv.snapshot()
	if len(msgs) != 2 || len(items) != 2 || childItems() != 0 || bad != 0 {
		t.Fatalf("got %d messages, items %v, %d child items, %d bad signatures; want the router's opening and clear only", len(msgs), items, childItems(), bad)
	}

	// A child that falls alone pages once its settle time is over, and so
	// does its clear.
	clock.Add(time.Minute)
	p.event(t, child(7), "router", meshmon.KindNodeDown)
	e.waitApplied(t)
	if n := itemsOf(child(7)); n != 0 {
		t.Fatalf("a child's page went before its settle time: %d", n)
	}
	clock.Add(settle)
	eventually.True(t, 30*time.Second, "the child paged", func() bool { return itemsOf(child(7)) == 1 })
	p.event(t, child(7), "router", meshmon.KindNodeUp)
	eventually.True(t, 30*time.Second, "the child's clear", func() bool { return itemsOf(child(7)) == 2 })

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	log, err := e.st.Log(ctx, "hook", 0)
	if err != nil {
		t.Fatal(err)
	}
	withdrawn := 0
	for _, a := range log {
		if a.Outcome == notifybus.OutcomeWithdrawn {
			withdrawn++
		}
	}
	// 50 openings that became symptoms; 50 ends of a symptom, each with
	// its clear.
	if withdrawn != 150 {
		t.Fatalf("log: %d withdrawn, want 150", withdrawn)
	}
}

// TestRunEscalatesFromTheHeldPage: with a settle time of 30 s and a step
// after 1 min, a correlatable alarm (a device behind a parent) that falls
// alone pages at 30 s and escalates at 90 s, a minute after its page, not
// at 60 s; an alarm without a parent, which falls at the same time, pages
// at once and escalates at 60 s; one whose held page is withdrawn (its
// parent fell within the settle time) never escalates. Real JetStream, the
// real alarm.Set, a fake clock and real webhook receivers.
func TestRunEscalatesFromTheHeldPage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	first, oncall := newReceiver(t, "k"), newReceiver(t, "k")
	e.webhook(t, "first", first.srv.URL, "k", 0, 0)
	e.webhook(t, "oncall", oncall.srv.URL, "k", 0, 0)
	const settle, after = 30 * time.Second, time.Minute
	e.rule(t, notify.Rule{Name: "all", Channels: []string{"first"}, Settle: settle,
		Escalation: []notify.Step{{After: after, Channel: "oncall"}}})
	t0 := time.Now().UTC()
	clock := &fakeClock{t: t0}
	cfg := testConfig()
	cfg.Now = clock.Now
	e.run(t, cfg)
	p := newProcessor(t, e, clock)
	// items are the items a receiver got, by device.
	items := func(r *receiver) map[string][]notify.Item {
		msgs, _, _, _ := r.snapshot()
		out := map[string][]notify.Item{}
		for _, m := range msgs {
			for _, it := range m.Items {
				out[it.Alarm.Device] = append(out[it.Alarm.Device], it)
			}
		}
		return out
	}

	p.event(t, "sw1", "rtr", meshmon.KindNodeDown) // alone behind its parent
	p.event(t, "solo", "", meshmon.KindNodeDown)   // no parent
	p.event(t, "sw3", "rtr3", meshmon.KindNodeDown)
	// Applied at t0: the runner decides on its clock.
	e.waitApplied(t)
	clock.Add(5 * time.Second)
	p.event(t, "rtr3", "", meshmon.KindNodeDown) // sw3 becomes its symptom
	e.waitApplied(t)
	eventually.True(t, 30*time.Second, "solo and rtr3 paged at once", func() bool {
		got := items(first)
		return len(got["solo"]) == 1 && len(got["rtr3"]) == 1
	})

	clock.Add(settle - 5*time.Second) // t0+30s: sw1's page goes, sw3's is withdrawn
	eventually.True(t, 30*time.Second, "sw1 paged after its settle time", func() bool { return len(items(first)["sw1"]) == 1 })
	e.waitOutboxEmpty(t)

	// t0+65s: solo's and rtr3's steps are due, in the same pass as sw1's
	// would be if it counted from its change.
	clock.Add(35 * time.Second)
	eventually.True(t, 30*time.Second, "solo and rtr3 escalated", func() bool {
		got := items(oncall)
		return len(got["solo"]) == 1 && len(got["rtr3"]) == 1
	})
	e.waitOutboxEmpty(t)
	if got := items(oncall); len(got["sw1"]) != 0 || len(got["sw3"]) != 0 {
		t.Fatalf("at t0+65s, oncall got sw1 %v and sw3 %v; want nothing before t0+90s, and nothing of sw3", got["sw1"], got["sw3"])
	}

	clock.Add(25 * time.Second) // t0+90s: a minute after sw1's page
	eventually.True(t, 30*time.Second, "sw1 escalated", func() bool { return len(items(oncall)["sw1"]) == 1 })
	e.waitOutboxEmpty(t)
	got := items(oncall)
	if it := got["sw1"][0]; it.What != notify.WhatEscalation || !it.At.Equal(t0.Add(settle+after)) {
		t.Errorf("sw1's escalation: %s at t0+%s, want an escalation at t0+%s", it.What, it.At.Sub(t0), settle+after)
	}
	if it := got["solo"][0]; !it.At.Equal(t0.Add(after)) {
		t.Errorf("solo's escalation at t0+%s, want t0+%s", it.At.Sub(t0), after)
	}
	if len(got["sw3"]) != 0 || len(items(first)["sw3"]) != 0 {
		t.Errorf("sw3, a symptom within its settle time, paged %v, escalated %v; want neither", items(first)["sw3"], got["sw3"])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := e.js.KeyValue(ctx, notifybus.EscalationsBucket)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for k := range keys.Keys() {
		t.Errorf("escalation %s still pending", k)
	}
}
