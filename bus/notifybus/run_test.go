package notifybus_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/alarm"
	"github.com/meshmon/meshmon/bus/notifybus"
	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/internal/meshtest"
	"github.com/meshmon/meshmon/notify"
)

// env is a peer with the ALARMS stream, as the alarm processor makes it.
type env struct {
	nc *nats.Conn
	js jetstream.JetStream
	st *notifybus.Store
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := meshtest.Site(ctx, t.TempDir(), "central1", "hub1", false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	nc, err := p.InProcessConn()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: alarm.Stream, Subjects: []string{"alarm.>"},
		Retention: jetstream.LimitsPolicy, Storage: jetstream.FileStorage, Duplicates: 10 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	st, err := notifybus.Open(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	return &env{nc: nc, js: js, st: st}
}

// publish publishes a change as the alarm processor does.
func (e *env) publish(t *testing.T, c alarm.Change) {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e.js.Publish(ctx, alarm.ChangeSubject(c.Alarm), b, jetstream.WithMsgID(c.MsgID())); err != nil {
		t.Fatal(err)
	}
}

// run starts a runner and returns the function that stops it and waits.
func (e *env) run(t *testing.T, cfg notifybus.Config) func() {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- notifybus.RunConfig(ctx, e.nc, cfg) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(time.Minute):
			t.Error("Run did not return within a minute of its cancel")
		}
	}
	t.Cleanup(stop)
	return stop
}

func testConfig() notifybus.Config {
	cfg := notifybus.DefaultConfig("acme")
	cfg.Tick, cfg.RetryFirst, cfg.RetryMax, cfg.AckWait, cfg.LateWait = 50*time.Millisecond, 50*time.Millisecond, 200*time.Millisecond, 2*time.Second, 2*time.Second
	return cfg
}

// receiver is a webhook receiver that checks each delivery's signature
// and counts deliveries by their X-Meshmon-Delivery.
type receiver struct {
	t      *testing.T
	secret []byte
	srv    *httptest.Server

	mu     sync.Mutex
	fail   int // answer 503 to this many requests first
	block  chan struct{}
	seen   chan struct{} // a request arrived (block set)
	got    []notify.Envelope
	byID   map[string]int
	items  map[string]int // item ID -> deliveries carrying it
	badSig int
}

func newReceiver(t *testing.T, secret string) *receiver {
	r := &receiver{t: t, secret: []byte(secret), byID: map[string]int{}, items: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	block, seen := r.block, r.seen
	r.block = nil
	r.mu.Unlock()
	if block != nil {
		close(seen)
		<-block
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !notify.Verify(r.secret, body, req.Header.Get(notify.HeaderSignature)) {
		r.badSig++
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	if r.fail > 0 {
		r.fail--
		http.Error(w, "try later", http.StatusServiceUnavailable)
		return
	}
	var env notify.Envelope
	if err := json.Unmarshal(body, &env); err != nil {
		r.t.Errorf("webhook body: %v", err)
	}
	if env.Delivery != req.Header.Get(notify.HeaderDelivery) {
		r.t.Errorf("body delivery %q, header %q", env.Delivery, req.Header.Get(notify.HeaderDelivery))
	}
	r.got = append(r.got, env)
	r.byID[env.Delivery]++
	for _, it := range env.Items {
		r.items[it.ID]++
	}
}

func (r *receiver) snapshot() (msgs []notify.Envelope, items map[string]int, byID map[string]int, badSig int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	items, byID = map[string]int{}, map[string]int{}
	for k, v := range r.items {
		items[k] = v
	}
	for k, v := range r.byID {
		byID[k] = v
	}
	return append([]notify.Envelope(nil), r.got...), items, byID, r.badSig
}

func opened(i int, at time.Time) alarm.Change {
	dev := fmt.Sprintf("dev%03d", i)
	a := alarm.Alarm{ID: alarm.ID("paris", dev, "icmp"), Tenant: "acme", Site: "paris", Device: dev, Check: "icmp", Kind: "node_down",
		Severity: "critical", State: alarm.StateOpen, Message: dev + " stopped answering ping", Count: 1, FirstSeen: at, LastSeen: at, Opened: 1, Seq: 1}
	return alarm.Change{What: alarm.WhatOpened, At: at, Alarm: a}
}

func next(c alarm.Change, what string, f func(*alarm.Alarm)) alarm.Change {
	c.What = what
	c.Alarm.Seq++
	if f != nil {
		f(&c.Alarm)
	}
	return c
}

func (e *env) webhook(t *testing.T, name, url, secret string, rate float64, burst int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ch := notify.Channel{Name: name, Type: notify.TypeWebhook, URL: url, RatePerMinute: rate, Burst: burst}
	if err := e.st.PutChannel(ctx, ch, []byte(secret)); err != nil {
		t.Fatal(err)
	}
}

func (e *env) rule(t *testing.T, r notify.Rule) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.st.PutRule(ctx, r); err != nil {
		t.Fatal(err)
	}
}

// TestRunDeliversSignedOncePerChange: an opening and a clear reach the
// webhook once each, signed; a repeat, a symptom and an alarm in
// maintenance do not; a receiver that fails first gets it on a retry,
// and the log holds the failed attempts and the delivery.
func TestRunDeliversSignedOncePerChange(t *testing.T) {
	e := newEnv(t)
	rcv := newReceiver(t, "hmac-key-1")
	rcv.fail = 2
	e.webhook(t, "hook", rcv.srv.URL, "hmac-key-1", 0, 0)
	e.rule(t, notify.Rule{Name: "all", Channels: []string{"hook"}})
	e.run(t, testConfig())

	now := time.Now().UTC()
	c := opened(1, now)
	e.publish(t, c)
	e.publish(t, next(c, alarm.WhatRepeated, func(a *alarm.Alarm) { a.Count++ }))
	sym := opened(2, now)
	sym.Alarm.SymptomOf = c.Alarm.ID
	e.publish(t, sym)
	mnt := opened(3, now)
	mnt.Alarm.Maintenance = "tuesday-upgrade"
	e.publish(t, mnt)
	cl := next(c, alarm.WhatCleared, func(a *alarm.Alarm) { a.State = alarm.StateCleared; a.ClearedAt = now })
	cl.Alarm.Seq++
	e.publish(t, cl)

	eventually.True(t, 30*time.Second, "the opening and the clear delivered", func() bool {
		_, items, _, _ := rcv.snapshot()
		return items[c.MsgID()] == 1 && items[cl.MsgID()] == 1
	})
	msgs, items, byID, bad := rcv.snapshot()
	if len(msgs) != 2 || len(items) != 2 || bad != 0 {
		t.Fatalf("got %d messages, items %v, %d bad signatures; want the opening and the clear only", len(msgs), items, bad)
	}
	for id, n := range byID {
		if n != 1 {
			t.Errorf("delivery %s received %d times", id, n)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	log, err := e.st.Log(ctx, "hook", 0)
	if err != nil {
		t.Fatal(err)
	}
	var failed, delivered int
	for _, a := range log {
		switch a.Outcome {
		case notifybus.OutcomeFailed:
			failed++
		case notifybus.OutcomeDelivered:
			delivered++
		}
	}
	if failed != 2 || delivered != 2 {
		t.Fatalf("log: %d failed, %d delivered attempts; want 2 and 2: %+v", failed, delivered, log)
	}
}
