package notifybus_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
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

func newEnv(t testing.TB) *env {
	t.Helper()
	e := newBareEnv(t)
	e.createAlarms(t)
	return e
}

// newBareEnv is a peer without the ALARMS stream.
func newBareEnv(t testing.TB) *env {
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
	return &env{nc: nc, js: js}
}

func (e *env) createAlarms(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := e.js.CreateStream(ctx, jetstream.StreamConfig{Name: alarm.Stream, Subjects: []string{"alarm.>"},
		Retention: jetstream.LimitsPolicy, Storage: jetstream.FileStorage, Duplicates: 10 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	st, err := notifybus.Open(ctx, e.js)
	if err != nil {
		t.Fatal(err)
	}
	e.st = st
}

// publish publishes a change as the alarm processor does.
func (e *env) publish(t testing.TB, c alarm.Change) {
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
func (e *env) run(t testing.TB, cfg notifybus.Config) func() {
	t.Helper()
	cancel, wait := e.start(t, cfg)
	return func() { cancel(); wait() }
}

// start starts a runner and returns its cancel and the function that
// waits for it to return.
func (e *env) start(t testing.TB, cfg notifybus.Config) (context.CancelFunc, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- notifybus.RunConfig(ctx, e.nc, cfg) }()
	var once sync.Once
	wait := func() {
		once.Do(func() { e.waitRun(t, done) })
	}
	t.Cleanup(func() { cancel(); wait() })
	return cancel, wait
}

func (e *env) waitRun(t testing.TB, done chan error) {
	{
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(time.Minute):
			t.Error("Run did not return within a minute of its cancel")
		}
	}
}

func testConfig() notifybus.Config {
	cfg := notifybus.DefaultConfig("acme")
	cfg.Tick, cfg.RetryFirst, cfg.RetryMax, cfg.AckWait = 50*time.Millisecond, 50*time.Millisecond, 200*time.Millisecond, 2*time.Second
	cfg.LateQuiet, cfg.LateWait = 300*time.Millisecond, 10*time.Second
	cfg.Reach.AllowLoopback = true // the receivers are httptest's, on loopback
	return cfg
}

// receiver is a webhook receiver that checks each delivery's signature
// and counts deliveries by their X-Meshmon-Delivery.
type receiver struct {
	t      testing.TB
	secret []byte
	srv    *httptest.Server

	mu     sync.Mutex
	fail   int           // answer 503 to this many requests first
	delay  time.Duration // answer each request this late
	block  chan struct{}
	seen   chan struct{} // a request arrived (block set)
	got    []notify.Envelope
	byID   map[string]int
	items  map[string]int // item ID -> deliveries carrying it
	badSig int
}

func newReceiver(t testing.TB, secret string) *receiver {
	r := &receiver{t: t, secret: []byte(secret), byID: map[string]int{}, items: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	block, seen, delay := r.block, r.seen, r.delay
	r.block = nil
	r.mu.Unlock()
	if delay > 0 {
		time.Sleep(delay) // a slow receiver, not synchronisation
	}
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

func (e *env) webhook(t testing.TB, name, url, secret string, rate float64, burst int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ch := notify.Channel{Name: name, Type: notify.TypeWebhook, URL: url, RatePerMinute: rate, Burst: burst, AllowPlaintext: true}
	if err := e.st.PutChannel(ctx, ch, []byte(secret), false); err != nil {
		t.Fatal(err)
	}
}

func (e *env) rule(t testing.TB, r notify.Rule) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.st.PutRule(ctx, r, false); err != nil {
		t.Fatal(err)
	}
}

// TestRunDeliversSignedOncePerChange: an opening and a clear reach the
// webhook once each, signed; a repeat, a symptom and an alarm in
// maintenance do not; a receiver that fails first gets it on a retry,
// and the log holds the failed attempts and the delivery.
func TestRunDeliversSignedOncePerChange(t *testing.T) {
	t.Parallel()
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

// TestRunStoppedMidDeliveryDeliversEachOnce: a runner cancelled while a
// delivery is in flight finishes and records it; the runner started
// after it delivers the rest, and every change reaches the receiver
// exactly once.
func TestRunStoppedMidDeliveryDeliversEachOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rcv := newReceiver(t, "k")
	e.webhook(t, "hook", rcv.srv.URL, "k", 0, 0)
	e.rule(t, notify.Rule{Name: "all", Channels: []string{"hook"}})
	const n = 20
	now := time.Now().UTC()
	for i := range n {
		e.publish(t, opened(i, now))
	}
	release, seen := make(chan struct{}), make(chan struct{})
	rcv.mu.Lock()
	rcv.block, rcv.seen = release, seen
	rcv.mu.Unlock()
	cancel, wait := e.start(t, testConfig())
	select {
	case <-seen:
	case <-time.After(30 * time.Second):
		t.Fatal("no delivery reached the receiver")
	}
	cancel()
	close(release)
	wait()
	_, items, _, _ := rcv.snapshot()
	if len(items) == 0 {
		t.Fatal("the delivery in flight when the runner was cancelled did not complete")
	}
	t.Logf("the first runner delivered %d of %d", len(items), n)
	e.run(t, testConfig())
	eventually.True(t, 30*time.Second, "every change delivered", func() bool {
		_, items, _, _ := rcv.snapshot()
		return len(items) == n
	})
	msgs, items, byID, _ := rcv.snapshot()
	for id, k := range items {
		if k != 1 {
			t.Errorf("change %s delivered %d times", id, k)
		}
	}
	for id, k := range byID {
		if k != 1 {
			t.Errorf("delivery %s received %d times", id, k)
		}
	}
	if len(msgs) != n {
		t.Errorf("%d messages for %d changes", len(msgs), n)
	}
}

// TestRunEscalatesUnacknowledged: an alarm still unacknowledged after
// the step's time pages the next channel, once, also when the runner
// restarted in between (the escalation waits in its bucket); an
// acknowledged one does not.
func TestRunEscalatesUnacknowledged(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rcv := newReceiver(t, "k")
	e.webhook(t, "first", rcv.srv.URL, "k", 0, 0)
	e.webhook(t, "oncall", rcv.srv.URL, "k", 0, 0)
	e.rule(t, notify.Rule{Name: "crit", Severities: []string{"critical"}, Channels: []string{"first"},
		Escalation: []notify.Step{{After: 5 * time.Second, Channel: "oncall"}}})
	stop := e.run(t, testConfig())
	now := time.Now().UTC()
	a, b := opened(1, now), opened(2, now)
	e.publish(t, a)
	e.publish(t, b)
	e.publish(t, next(b, alarm.WhatAcked, func(x *alarm.Alarm) { x.Acked, x.AckedBy = true, "alice" }))
	eventually.True(t, 30*time.Second, "both pages", func() bool {
		_, items, _, _ := rcv.snapshot()
		return items[a.MsgID()] == 1 && items[b.MsgID()] == 1
	})
	stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := e.js.KeyValue(ctx, notifybus.EscalationsBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, a.Alarm.ID+".crit"); err != nil {
		t.Fatalf("the unacknowledged alarm's escalation is not pending after the runner stopped: %v", err)
	}
	if _, err := kv.Get(ctx, b.Alarm.ID+".crit"); err == nil {
		t.Fatal("the acknowledged alarm's escalation is still pending")
	}
	e.run(t, testConfig())
	eventually.True(t, 30*time.Second, "the escalation", func() bool {
		_, items, _, _ := rcv.snapshot()
		return items[a.MsgID()+".e1"] == 1
	})
	eventually.True(t, 10*time.Second, "the escalation done", func() bool {
		_, err := kv.Get(ctx, a.Alarm.ID+".crit")
		return err != nil
	})
	msgs, items, _, _ := rcv.snapshot()
	if len(msgs) != 3 || items[b.MsgID()+".e1"] != 0 {
		t.Fatalf("got %d messages (%v), want the two pages and one escalation", len(msgs), items)
	}
	if !time.Now().After(now.Add(5 * time.Second)) {
		t.Fatal("escalated before its step's time")
	}
}

// TestRunSummarisesLateChanges: changes applied late (a site catching
// up) go as one summary, not one page each.
func TestRunSummarisesLateChanges(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rcv := newReceiver(t, "k")
	e.webhook(t, "hook", rcv.srv.URL, "k", 0, 0)
	e.rule(t, notify.Rule{Name: "all", Channels: []string{"hook"}})
	now := time.Now().UTC().Add(-5 * time.Minute)
	const n = 12
	for i := range n {
		c := opened(i, now)
		c.Late = true
		e.publish(t, c)
	}
	e.run(t, testConfig())
	eventually.True(t, 30*time.Second, "every late change", func() bool {
		_, items, _, _ := rcv.snapshot()
		return len(items) == n
	})
	msgs, _, _, _ := rcv.snapshot()
	if len(msgs) != 1 || msgs[0].Reason != notify.ReasonLate || len(msgs[0].Items) != n {
		t.Fatalf("got %d messages, want one late summary of %d: %+v", len(msgs), n, msgs)
	}
}

// TestRunRateLimitSummarises: what is over a channel's rate limit waits
// for a token and goes as a summary; nothing is lost or sent twice.
func TestRunRateLimitSummarises(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rcv := newReceiver(t, "k")
	e.webhook(t, "hook", rcv.srv.URL, "k", 30, 2) // a token every 2 s, 2 at once
	e.rule(t, notify.Rule{Name: "all", Channels: []string{"hook"}})
	now := time.Now().UTC()
	const n = 8
	for i := range n {
		e.publish(t, opened(i, now))
	}
	e.run(t, testConfig())
	eventually.True(t, 30*time.Second, "every change", func() bool {
		_, items, _, _ := rcv.snapshot()
		return len(items) == n
	})
	msgs, items, _, _ := rcv.snapshot()
	for id, k := range items {
		if k != 1 {
			t.Errorf("change %s delivered %d times", id, k)
		}
	}
	summaries := 0
	for _, m := range msgs {
		if m.Reason == notify.ReasonRateLimit {
			summaries++
		}
	}
	if len(msgs) >= n || summaries == 0 {
		t.Fatalf("%d messages, %d rate-limit summaries for %d changes: want fewer messages than changes", len(msgs), summaries, n)
	}
	t.Logf("%d changes in %d messages, %d of them summaries", n, len(msgs), summaries)
}

// TestRunStartsBeforeItsStreamFollowsRulesAndLeavesNothing: a runner
// started before the ALARMS stream exists waits for it; channels and
// rules added while it runs apply to the next change; a consumer removed
// under it is made again; once cancelled it leaves no goroutine behind.
func TestRunStartsBeforeItsStreamFollowsRulesAndLeavesNothing(t *testing.T) {
	// Not parallel: it counts the runner goroutines of the process.
	e := newBareEnv(t)
	rcv := newReceiver(t, "k")
	stop := e.run(t, testConfig())
	e.createAlarms(t)
	now := time.Now().UTC()
	quiet := opened(1, now) // no rule yet: nobody is paged
	e.publish(t, quiet)
	eventually.NoError(t, 30*time.Second, "the first change applied", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := e.js.Consumer(ctx, alarm.Stream, notifybus.Consumer)
		if err != nil {
			return err
		}
		info, err := c.Info(ctx)
		if err != nil {
			return err
		}
		if info.AckFloor.Stream < 1 {
			return fmt.Errorf("ack floor %d", info.AckFloor.Stream)
		}
		return nil
	})
	e.webhook(t, "hook", rcv.srv.URL, "k", 0, 0)
	e.rule(t, notify.Rule{Name: "all", Channels: []string{"hook"}})
	c := opened(2, now)
	eventually.True(t, 30*time.Second, "a change after the rule delivered", func() bool {
		// The rule reaches the runner through its watch: publish
		// changes until one is paged.
		c.Alarm.Seq++
		e.publish(t, c)
		_, items, _, _ := rcv.snapshot()
		return len(items) > 0
	})
	if _, items, _, _ := rcv.snapshot(); items[quiet.MsgID()] != 0 {
		t.Fatal("a change applied before any rule was paged")
	}
	// Its consumer removed, it makes it again; the changes it takes
	// again are not paged again.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.js.DeleteConsumer(ctx, alarm.Stream, notifybus.Consumer); err != nil {
		t.Fatal(err)
	}
	after := opened(3, now)
	e.publish(t, after)
	eventually.True(t, 30*time.Second, "a change after the consumer was removed", func() bool {
		_, items, _, _ := rcv.snapshot()
		return items[after.MsgID()] == 1
	})
	_, items, byID, _ := rcv.snapshot()
	for id, k := range byID {
		if k != 1 {
			t.Errorf("delivery %s received %d times", id, k)
		}
	}
	if items[quiet.MsgID()] != 0 {
		t.Error("a change applied before the consumer was removed, under no rule then, was paged when it was made again")
	}
	stop()
	var left []string
	eventually.True(t, 30*time.Second, "the runner's goroutines gone", func() bool {
		left = runnerGoroutines()
		return len(left) == 0
	})
}

// runnerGoroutines are the stacks of the goroutines of a runner: in
// notifybus (not its tests), or an HTTP client connection of its sender.
// (The embedded server's own goroutines grow with the streams the
// runner makes, so a count of all would not do.)
func runnerGoroutines() []string {
	buf := make([]byte, 4<<20)
	var out []string
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "bus/notifybus.") && !strings.Contains(g, "notifybus_test.") || strings.Contains(g, "net/http.(*persistConn)") {
			out = append(out, g)
		}
	}
	return out
}

// TestLogRefusesABadChannel: a channel name with a wildcard or a dot
// would widen the log's subject filter to other channels; Log refuses it,
// and a negative limit, with an error naming the rule.
func TestLogRefusesABadChannel(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, ch := range []string{"*", ">", "hook.>", "a.b", "hook*"} {
		if _, err := e.st.Log(ctx, ch, 0); err == nil || !strings.Contains(err.Error(), "channel") {
			t.Errorf("Log(%q): err %v, want one naming the channel", ch, err)
		}
	}
	if _, err := e.st.Log(ctx, "hook", -1); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("Log with limit -1: err %v, want one naming the limit", err)
	}
	if _, err := e.st.Log(ctx, "hook", 0); err != nil {
		t.Errorf("Log(hook): %v", err)
	}
}
