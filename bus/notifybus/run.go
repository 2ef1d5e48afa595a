package notifybus

import (
	"cmp"
	"context"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/alarm"
	"github.com/meshmon/meshmon/internal/backoff"
	"github.com/meshmon/meshmon/notify"
)

// Config is how a runner runs; DefaultConfig is what Run uses.
type Config struct {
	Tenant string
	// Holder names who runs the runner (a central peer's name), in its
	// claims in the delivery log; a random suffix makes each Run's
	// claims its own.
	Holder string
	Log    *slog.Logger // nil: no log
	Now    func() time.Time
	// Tick is how often the outbox, the escalations and the
	// configuration are looked at (a change wakes the outbox at once).
	Tick time.Duration
	// RetryFirst and RetryMax bound the backoff of a failing channel.
	RetryFirst, RetryMax time.Duration
	// SendTimeout bounds one delivery attempt. A cancelled runner
	// finishes the attempt in flight (and records it) before it
	// returns, so it returns within about SendTimeout.
	SendTimeout time.Duration
	// ClaimMargin is added to SendTimeout in a claim, for the clocks of
	// the central peers, which may differ by this much: another runner
	// finding the claim unresolved waits that long before it logs the
	// item uncertain.
	ClaimMargin time.Duration
	// Late changes go as one summary once the runner has applied every
	// change in the stream and none has come late for LateQuiet (the
	// catch-up is over), or once the oldest has waited LateWait.
	LateQuiet, LateWait time.Duration
	// AckWait is the consumer's: how long a change taken by a runner
	// that died waits before it is given to the next.
	AckWait time.Duration
	HTTP    *http.Client // nil: notify.Client(Reach, SendTimeout)
	// Reach is where deliveries may connect (notify.Dialer): a central
	// peer's --notify-allow-loopback and --notify-deny-net.
	Reach notify.Reach
}

// DefaultConfig is the runner of a tenant as Run starts it.
func DefaultConfig(tenant string) Config {
	return Config{Tenant: tenant, Now: time.Now, Tick: time.Second, RetryFirst: 2 * time.Second, RetryMax: 5 * time.Minute,
		SendTimeout: 15 * time.Second, ClaimMargin: 5 * time.Second, LateQuiet: 5 * time.Second, LateWait: time.Minute, AckWait: 30 * time.Second}
}

// Run runs the tenant's notifications on nc, a connection in the
// tenant's account at central, until ctx is done; then it returns nil
// (after finishing the delivery in flight). It waits for the ALARMS
// stream, consumes it with the durable consumer Consumer, and delivers
// and escalates from the buckets of Store, so it may be stopped and
// started again, here or on another central peer, without losing or
// repeating a notification. Each item is claimed in the delivery log
// before it is sent, so no two runners send it, even two at once, and a
// runner that dies with it in flight leaves it sent at most once
// (OutcomeUncertain). One Run per tenant is meant (the lease of the
// central peers sees to it).
func Run(ctx context.Context, nc *nats.Conn, tenant string) error {
	return RunConfig(ctx, nc, DefaultConfig(tenant))
}

// RunConfig is Run with cfg.
func RunConfig(ctx context.Context, nc *nats.Conn, cfg Config) error {
	if err := meshmon.ValidateName("tenant", cfg.Tenant); err != nil {
		return err
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HTTP == nil {
		// Its own client: its idle connections close with the runner.
		cfg.HTTP = notify.Client(cfg.Reach, cfg.SendTimeout)
		defer cfg.HTTP.CloseIdleConnections()
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	r := &runner{cfg: cfg, log: cfg.Log.With("tenant", cfg.Tenant), wake: make(chan struct{}, 1), ready: make(chan struct{}),
		sender: &notify.Sender{HTTP: cfg.HTTP, Now: cfg.Now, Reach: cfg.Reach}, chans: map[string]*chanState{},
		id: cmp.Or(cfg.Holder, "runner") + "." + nuid.Next(), known: map[string]uint64{}, unrecorded: map[string]Attempt{}}
	cons, err := r.setup(ctx, js)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	var wg sync.WaitGroup
	r.outboxDirty = true
	wg.Go(func() { r.watchConfig(ctx) })
	wg.Go(func() { r.consume(ctx, js, cons) })
	wg.Go(func() { r.work(ctx) })
	wg.Wait()
	return nil
}

type runner struct {
	cfg    Config
	log    *slog.Logger
	st     *Store
	sender *notify.Sender
	wake   chan struct{}

	conf      atomic.Pointer[Settings]
	ready     chan struct{} // closed once conf is read
	readyOnce sync.Once

	// What the worker has to look at: the outbox while it may hold
	// something, the escalations when one is due. A generation moves
	// with every change that may add work, so a pass that read before
	// it does not clear its flag.
	mu          sync.Mutex
	outboxGen   uint64
	outboxDirty bool
	escGen      uint64
	escDue      time.Time     // zero: now
	caughtUp    atomic.Bool   // the consumer has nothing pending
	lastSeq     atomic.Uint64 // the ALARMS sequence of the last change applied

	// id names this Run in its claims.
	id string
	// Work only: the outbox keys read in the log, to send, with the log
	// sequence of their last attempt (a claim is on condition that it is
	// still the last); and the attempts made whose record failed.
	chans      map[string]*chanState
	known      map[string]uint64
	unrecorded map[string]Attempt
	// alarms is the tenant's alarms bucket, which held pages are checked
	// against (settle), once it exists; work only.
	alarms jetstream.KeyValue
}

// chanState is a channel's rate limit and retry state.
type chanState struct {
	ch      notify.Channel
	bucket  *notify.Bucket
	retry   *backoff.Backoff
	retryAt time.Time
}

// setup waits for the ALARMS stream (another worker makes it), opens
// the store and makes the durable consumer.
func (r *runner) setup(ctx context.Context, js jetstream.JetStream) (jetstream.Consumer, error) {
	b := backoff.New(r.cfg.RetryFirst/4+time.Millisecond, 10*time.Second)
	for {
		_, err := js.Stream(ctx, alarm.Stream)
		if err == nil {
			break
		}
		r.log.Debug("notify: waiting for the alarms stream", "err", err)
		if !b.Wait(ctx) {
			return nil, ctx.Err()
		}
	}
	for {
		st, err := Open(ctx, js)
		if err == nil {
			r.st = st
			break
		}
		r.log.Warn("notify: open store", "err", err)
		if !b.Wait(ctx) {
			return nil, ctx.Err()
		}
	}
	return r.consumer(ctx, js, 0)
}

// consumer makes (or finds) the durable consumer on ALARMS, trying
// again until ctx is done. A consumer made for the first time starts at
// the stream's beginning; one made again (removed under a running
// runner) after the last change this runner applied (after, a stream
// sequence; 0: none).
func (r *runner) consumer(ctx context.Context, js jetstream.JetStream, after uint64) (jetstream.Consumer, error) {
	b := backoff.New(r.cfg.RetryFirst/4+time.Millisecond, 10*time.Second)
	cfg := jetstream.ConsumerConfig{
		Durable: Consumer, Description: "meshmon notifications", DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: r.cfg.AckWait, MaxDeliver: -1, MaxAckPending: 256,
		FilterSubject: "alarm.>",
	}
	if after > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, after+1
	}
	for {
		c, err := js.CreateOrUpdateConsumer(ctx, alarm.Stream, cfg)
		if err == nil {
			return c, nil
		}
		r.log.Warn("notify: consumer", "err", err)
		if !b.Wait(ctx) {
			return nil, ctx.Err()
		}
	}
}
