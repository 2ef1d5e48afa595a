package alarmbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/alarm"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/eventually"
)

// startJS starts an embedded JetStream server on disk with the EVENTS
// stream, as a central with its own users has it.
func startJS(t testing.TB) *server.Server {
	t.Helper()
	srv, err := server.NewServer(&server.Options{ServerName: "alarms-" + strconv.FormatInt(time.Now().UnixNano(), 36), Host: "127.0.0.1", Port: -1,
		JetStream: true, StoreDir: t.TempDir(), SyncAlways: true, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	_, js := dial(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := bus.EnsureStreams(ctx, js, bus.DefaultStreamLimits()); err != nil {
		t.Fatal(err)
	}
	return srv
}

func dial(t testing.TB, srv *server.Server) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// processor runs a processor over its own connection until stop is
// called, which closes the connection first (as a crash would).
type processor struct {
	nc   *nats.Conn
	stop func()
	err  error
}

func runProcessor(t *testing.T, srv *server.Server) *processor {
	t.Helper()
	nc, err := nats.Connect(srv.ClientURL(), nats.NoReconnect())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &processor{nc: nc}
	var wg sync.WaitGroup
	wg.Go(func() { p.err = Worker(nil, 0)(ctx, nc, "") })
	var once sync.Once
	p.stop = func() { once.Do(func() { nc.Close(); cancel(); wg.Wait() }) }
	t.Cleanup(p.stop)
	return p
}

var t0 = time.Now().UTC().Truncate(time.Second)

func event(device, parent, kind, check string) meshmon.Event {
	sev := meshmon.SeverityCleared
	if kind == meshmon.KindNodeDown {
		sev = meshmon.SeverityCritical
	}
	return meshmon.Event{SpecVersion: "1.0", Type: meshmon.EventTypePrefix + kind, Time: t0, Subject: device,
		Data: meshmon.EventData{Tenant: "acme", Site: "par", Device: device, Parent: parent, Kind: kind, Check: check, Severity: sev}}
}

// publish stores events in EVENTS and returns their sequences.
func publish(t *testing.T, js jetstream.JetStream, evs ...meshmon.Event) []uint64 {
	t.Helper()
	seqs, err := publishEvents(js, evs...)
	if err != nil {
		t.Fatal(err)
	}
	return seqs
}

func publishEvents(js jetstream.JetStream, evs ...meshmon.Event) ([]uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var futs []jetstream.PubAckFuture
	for _, e := range evs {
		b, _ := json.Marshal(e)
		f, err := js.PublishAsync(meshmon.EventSubject(e.Data.Site, e.Data.Device, e.Data.Kind), b)
		if err != nil {
			return nil, err
		}
		futs = append(futs, f)
	}
	var seqs []uint64
	for _, f := range futs {
		select {
		case a := <-f.Ok():
			seqs = append(seqs, a.Sequence)
		case err := <-f.Err():
			return nil, err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return seqs, nil
}

// storedChanges reads every change in ALARMS, in order.
func storedChanges(t *testing.T, js jetstream.JetStream) []alarm.Change {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, alarm.Stream)
	if err != nil {
		t.Fatal(err)
	}
	n := s.CachedInfo().State.Msgs
	var out []alarm.Change
	for seq := uint64(1); uint64(len(out)) < n; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		var c alarm.Change
		if err := json.Unmarshal(m.Data, &c); err != nil || m.Header.Get(jetstream.MsgIDHeader) != c.MsgID() {
			t.Fatalf("change %d: %v, msg id %q", seq, err, m.Header.Get(jetstream.MsgIDHeader))
		}
		out = append(out, c)
	}
	return out
}

func checkpoint(js jetstream.JetStream) uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, ProcessorBucket)
	if err != nil {
		return 0
	}
	e, err := kv.Get(ctx, AppliedKey)
	if err != nil {
		return 0
	}
	c, _ := parseCheckpoint(e.Value())
	return c.Applied
}

// storm is a router with n devices behind it going down and coming back.
func storm(n int) []meshmon.Event {
	evs := []meshmon.Event{event("router", "", meshmon.KindNodeDown, "icmp")}
	for i := range n {
		evs = append(evs, event(fmt.Sprintf("d%03d", i), "router", meshmon.KindNodeDown, "icmp"))
	}
	for i := range n / 2 {
		evs = append(evs, event(fmt.Sprintf("d%03d", i), "router", meshmon.KindSNMPUnreachable, "snmp"))
	}
	evs = append(evs, event("router", "", meshmon.KindNodeUp, "icmp"))
	for i := range n {
		evs = append(evs, event(fmt.Sprintf("d%03d", i), "router", meshmon.KindNodeUp, "icmp"))
	}
	return evs
}

// TestRouterWith50DevicesBehindIt: the router goes down, then the 50
// devices behind it: one real alarm, 50 symptoms of it, in the bucket and
// in ALARMS.
func TestRouterWith50DevicesBehindIt(t *testing.T) {
	srv := startJS(t)
	_, js := dial(t, srv)
	runProcessor(t, srv)
	evs := storm(50)[:51]
	seqs := publish(t, js, evs...)
	eventually.True(t, 20*time.Second, "every event applied", func() bool { return checkpoint(js) == seqs[len(seqs)-1] })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	as, err := List(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	real, symptoms := 0, 0
	for _, a := range as {
		switch {
		case a.State == alarm.StateOpen && a.SymptomOf == "":
			real++
		case a.State == alarm.StateOpen && a.SymptomOf == "par.router.icmp":
			symptoms++
		}
	}
	if real != 1 || symptoms != 50 || len(as) != 51 {
		t.Fatalf("%d alarms: %d real, %d symptoms; want 51: 1 and 50", len(as), real, symptoms)
	}
	paged := 0
	for _, c := range storedChanges(t, js) {
		if c.What == alarm.WhatOpened && c.Alarm.SymptomOf == "" {
			paged++
		}
	}
	if paged != 1 {
		t.Fatalf("%d alarms opened without being a symptom, want 1 (the router's)", paged)
	}
}

// TestProcessorKilledMidStormResumes: a processor is killed (its
// connection closed) in the middle of a storm, another takes over from the
// checkpoint; ALARMS then holds exactly the changes one processor applying
// every event would have made, by MsgID: none twice, none missing (every
// clear delivered).
func TestProcessorKilledMidStormResumes(t *testing.T) {
	srv := startJS(t)
	_, js := dial(t, srv)
	evs := storm(200)
	p1 := runProcessor(t, srv)
	seqs := publish(t, js, evs[:300]...)
	eventually.True(t, 20*time.Second, "the first processor under way", func() bool { return checkpoint(js) > 50 })
	var wg sync.WaitGroup
	var pubErr error
	wg.Go(func() { _, pubErr = publishEvents(js, evs[300:]...) })
	p1.stop()
	killedAt := checkpoint(js)
	t.Logf("first processor killed at checkpoint %d of %d events", killedAt, len(evs))
	runProcessor(t, srv)
	wg.Wait()
	if pubErr != nil {
		t.Fatal(pubErr)
	}
	eventually.True(t, 30*time.Second, "every event applied", func() bool {
		return checkpoint(js) == seqs[0]+uint64(len(evs))-1
	})

	ref := alarm.NewSet("")
	var want []string
	for i, e := range evs {
		for _, c := range ref.Apply(e, seqs[0]+uint64(i), e.Time) {
			want = append(want, c.What+" "+c.MsgID())
		}
	}
	var got []string
	for _, c := range storedChanges(t, js) {
		got = append(got, c.What+" "+c.MsgID())
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("killed at checkpoint %d: ALARMS holds %d changes, want %d", killedAt, len(got), len(want))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	as, err := List(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as {
		if a.Check == "icmp" && a.State != alarm.StateCleared {
			t.Fatalf("alarm %s not cleared: %+v", a.ID, a)
		}
		if w, _ := ref.Get(a.ID); w.Seq != a.Seq || w.State != a.State || w.SymptomOf != a.SymptomOf {
			t.Fatalf("alarm %s in the bucket %+v, want %+v", a.ID, a, w)
		}
	}
}

// openAlarm runs a processor over a server of its own and opens one
// alarm there (r1 down); it returns a connection, its JetStream and the
// alarm's ID.
func openAlarm(t *testing.T) (*nats.Conn, jetstream.JetStream, string) {
	t.Helper()
	srv := startJS(t)
	nc, js := dial(t, srv)
	runProcessor(t, srv)
	seqs := publish(t, js, event("r1", "", meshmon.KindNodeDown, "icmp"))
	eventually.True(t, 20*time.Second, "the event applied", func() bool { return checkpoint(js) == seqs[0] })
	return nc, js, alarm.ID("par", "r1", "icmp")
}

// TestActions: ack, comment, unack and clear through the processor, by
// the user of the subject; refusals come back as the alarm package's
// errors.
func TestActions(t *testing.T) {
	nc, js, id := openAlarm(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cs, err := Act(ctx, nc, "ann", alarm.Action{Verb: alarm.VerbAck, ID: id, Text: "looking", By: "mallory"})
	if err != nil || len(cs) != 1 || cs[0].By != "ann" || !cs[0].Alarm.Acked || cs[0].Alarm.AckedBy != "ann" {
		t.Fatalf("ack: %+v, %v", cs, err)
	}
	if _, err := Act(ctx, nc, "bob", alarm.Action{Verb: alarm.VerbAck, ID: id}); !errors.Is(err, alarm.ErrNoChange) {
		t.Fatalf("second ack: %v, want ErrNoChange", err)
	}
	if _, err := Act(ctx, nc, "bob", alarm.Action{Verb: alarm.VerbAck, ID: "par.r9.icmp"}); !errors.Is(err, alarm.ErrNotFound) {
		t.Fatalf("ack of no alarm: %v, want ErrNotFound", err)
	}
	if _, err := Act(ctx, nc, "bob", alarm.Action{Verb: alarm.VerbClear, ID: id, Text: "fixed"}); err != nil {
		t.Fatal(err)
	}
	a, err := Get(ctx, js, id)
	if err != nil || a.State != alarm.StateCleared || a.ClearedBy != "bob" || len(a.Comments) != 2 {
		t.Fatalf("alarm after actions: %+v, %v", a, err)
	}
	var whats []string
	for _, c := range storedChanges(t, js) {
		whats = append(whats, c.What+" "+c.By)
	}
	if want := []string{"opened ", "acked ann", "cleared bob"}; !slices.Equal(whats, want) {
		t.Fatalf("ALARMS: %v, want %v", whats, want)
	}
}

// TestMaintenanceWindow: a window over a device, stored in the bucket, is
// on the alarms opened in it.
func TestMaintenanceWindow(t *testing.T) {
	srv := startJS(t)
	_, js := dial(t, srv)
	runProcessor(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	eventually.NoError(t, 20*time.Second, "the maintenance bucket", func() error {
		_, err := js.KeyValue(ctx, alarm.MaintenanceBucket)
		return err
	})
	w := alarm.Window{ID: "swap", Site: "par", Device: "r1", Start: t0.Add(-time.Minute), Duration: meshmon.Duration(time.Hour), TZ: "Europe/Paris"}
	if err := AddWindow(ctx, js, w); err != nil {
		t.Fatal(err)
	}
	if err := AddWindow(ctx, js, w); err == nil {
		t.Fatal("a window added twice")
	}
	ws, err := ListWindows(ctx, js)
	if err != nil || len(ws) != 1 || ws[0].ID != "swap" {
		t.Fatalf("windows: %+v, %v", ws, err)
	}
	// The processor sees the window before it applies an event after it.
	eventually.True(t, 20*time.Second, "the alarm in maintenance", func() bool {
		seqs := publish(t, js, event("r1", "", meshmon.KindNodeDown, "icmp"), event("r1", "", meshmon.KindNodeUp, "icmp"))
		eventually.True(t, 20*time.Second, "applied", func() bool { return checkpoint(js) == seqs[1] })
		a, err := Get(ctx, js, alarm.ID("par", "r1", "icmp"))
		return err == nil && a.Maintenance == "swap"
	})
	if err := RemoveWindow(ctx, js, "swap"); err != nil {
		t.Fatal(err)
	}
	if err := RemoveWindow(ctx, js, "swap"); !errors.Is(err, alarm.ErrWindowNotFound) {
		t.Fatalf("remove twice: %v", err)
	}
}

// TestRemoveUnknownWindow: removing a window that does not exist says so,
// naming it, whether the tenant has a maintenance bucket yet or not; it is
// not an alarm that is missing.
func TestRemoveUnknownWindow(t *testing.T) {
	srv := startJS(t)
	_, js := dial(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	check := func(when string) {
		t.Helper()
		err := RemoveWindow(ctx, js, "nightly")
		if !errors.Is(err, alarm.ErrWindowNotFound) || errors.Is(err, alarm.ErrNotFound) {
			t.Fatalf("%s: remove an unknown window: %v, want ErrWindowNotFound", when, err)
		}
		// What the operator reads must name the window it did not find.
		if !strings.Contains(err.Error(), "nightly") {
			t.Fatalf("%s: %q does not name the window", when, err)
		}
	}
	check("no maintenance bucket yet")
	runProcessor(t, srv)
	eventually.NoError(t, 20*time.Second, "the maintenance bucket", func() error {
		_, err := js.KeyValue(ctx, alarm.MaintenanceBucket)
		return err
	})
	check("with the bucket")
}

// TestProcessorRefusesUntrustedEvents: a poller's credential may publish
// any body on its own site's subjects. An event whose body names another
// site, or whose check or trap would make an alarm id no subject or key
// takes, changes nothing, and the events after it are applied: the
// processor neither opens another site's alarm nor stops at such an event.
func TestProcessorRefusesUntrustedEvents(t *testing.T) {
	srv := startJS(t)
	_, js := dial(t, srv)
	runProcessor(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	other := event("core1", "", meshmon.KindNodeDown, "icmp")
	other.Data.Site = "lyo" // published on par's subject
	badCheck := event("sw1", "", meshmon.KindIfDown, "if.1 x")
	badTrap := event("sw2", "", meshmon.KindTrap, "trap")
	badTrap.Data.Trap = &meshmon.Trap{Labels: map[string]string{"trap": "linkDown", "if_index": "1 x"}}
	good := event("core2", "", meshmon.KindNodeDown, "icmp")
	var last uint64
	for _, e := range []struct {
		subject string
		ev      meshmon.Event
	}{
		{"ev.par.core1.node_down", other},
		{"ev.par.sw1.if_down", badCheck},
		{"ev.par.sw2.trap", badTrap},
		{"ev.par.core2.node_down", good},
	} {
		b, _ := json.Marshal(e.ev)
		a, err := js.Publish(ctx, e.subject, b)
		if err != nil {
			t.Fatal(err)
		}
		last = a.Sequence
	}
	eventually.True(t, 20*time.Second, "every event applied", func() bool { return checkpoint(js) == last })
	as, err := List(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 1 || as[0].ID != "par.core2.icmp" {
		t.Fatalf("alarms %+v, want par.core2.icmp alone", as)
	}
}

// TestCheckpointFormats: the checkpoint an earlier release stored (the
// sequence alone) reads as one with no sites.
func TestCheckpointFormats(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		err  bool
	}{
		{"401", 401, false},
		{`{"applied":401,"last_id":"x","sites":{"paris":400}}`, 401, false},
		{"", 0, true},
		{"x", 0, true},
	} {
		c, err := parseCheckpoint([]byte(tc.in))
		if (err != nil) != tc.err || c.Applied != tc.want {
			t.Errorf("%q: %+v, %v", tc.in, c, err)
		}
	}
}

// TestDeliveriesAreNoActions: a push consumer that delivers the alarms
// bucket's entries (each an alarm's JSON, its "id" among it) on an action
// subject that names another user, alarmop.boss.clear. JetStream publishes
// deliveries as itself, checking no permission (any user who may make a
// consumer chooses its deliver subject), and delivers while a subscription
// to exactly that subject exists, here a second client's. The processor
// still takes none for an action: a delivery carries its stored subject
// ($KV.alarms.<id>), not the deliver subject, and the processor takes the
// user and the verb from the subject, so no stream's message can pass for
// an action unless a stream stored alarmop.> (none does; the peers alone
// make streams). The task servers read the requester from the subject the
// same way.
func TestDeliveriesAreNoActions(t *testing.T) {
	nc, js, id := openAlarm(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	deliver := ActionPrefix + ".boss." + alarm.VerbClear
	seen, err := nc.SubscribeSync(deliver)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, "KV_"+alarm.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateOrUpdatePushConsumer(ctx, jetstream.ConsumerConfig{
		Durable: "mallory", DeliverSubject: deliver, AckPolicy: jetstream.AckNonePolicy,
	}); err != nil {
		t.Fatal(err)
	}
	m, err := seen.NextMsg(5 * time.Second)
	if err != nil || !strings.Contains(string(m.Data), id) {
		t.Fatalf("the alarm was not delivered on %s: %v", deliver, err)
	}
	if want := bus.KVSubject(alarm.Bucket, id); m.Subject != want {
		t.Fatalf("a delivery on %s carries the subject %s, want the stored one, %s", deliver, m.Subject, want)
	}
	// The processor takes messages in order: an action sent after the
	// delivery is answered after the delivery was taken.
	if _, err := Act(ctx, nc, "ann", alarm.Action{Verb: alarm.VerbComment, ID: id, Text: "still down"}); err != nil {
		t.Fatal(err)
	}
	a, err := Get(ctx, js, id)
	if err != nil || a.State != alarm.StateOpen || a.ClearedBy != "" {
		t.Fatalf("alarm after the delivery: %+v, %v", a, err)
	}
}
