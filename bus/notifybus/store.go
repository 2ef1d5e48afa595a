// Package notifybus is the NATS side of notifications: the tenant's
// notification configuration, channel secrets, outbox, pending
// escalations and delivery log in JetStream at central, and Run, the
// per-tenant runner that consumes the ALARMS stream, applies the rules
// (package notify), delivers and escalates.
package notifybus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/alarm"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/notify"
)

// Buckets and the stream of notifications, in each tenant's account at
// central.
const (
	// ConfigBucket holds the channels (key channel.<name>) and rules
	// (key rule.<name>), JSON, without secrets.
	ConfigBucket = "notify"
	// SecretsBucket holds each channel's secret (key <channel>): a
	// webhook's HMAC key, a chat tool's webhook URL, an SMTP password.
	// Admins and the runner read it; a NOC credential may not.
	SecretsBucket = "notify_secrets"
	// OutboxBucket holds what is still to be delivered (key
	// <channel>.<item id>).
	OutboxBucket = "notify_outbox"
	// EscalationsBucket holds the pending escalations (key
	// <alarm id>.<rule>), so that they survive a restart.
	EscalationsBucket = "notify_escalations"
	// LogStream keeps every delivery attempt on LogSubject.
	LogStream = "NOTIFY_LOG"
	// Consumer is the runner's durable consumer on alarm.Stream.
	Consumer = "notify"
)

// LogSubject is the subject of the delivery attempts of an item (a
// change's MsgID, ".e<step>" for an escalation) on a channel.
func LogSubject(channel, item string) string { return "notify.log." + channel + "." + item }

// Outcomes of a delivery attempt.
const (
	OutcomeDelivered = "delivered" // the channel took it
	OutcomeFailed    = "failed"    // it did not; the item stays in the outbox and is tried again
	OutcomeDropped   = "dropped"   // the channel no longer exists
	// OutcomeSending is the claim a runner records just before it
	// sends: no other runner sends the item while it holds (until
	// Until), and one that finds it later, never resolved, does not send
	// the item again (OutcomeUncertain).
	OutcomeSending = "sending"
	// OutcomeUncertain: the item was in flight when its runner died
	// (its claim expired unresolved); it may or may not have reached the
	// channel and is not sent again.
	OutcomeUncertain = "uncertain"
	// OutcomeWithdrawn: a page of a correlatable alarm, held for its
	// settle time, was not sent, because the alarm became a symptom (or
	// went into maintenance, or cleared) meanwhile; or the clear of such
	// an alarm whose page was withdrawn so. Error says which.
	OutcomeWithdrawn = "withdrawn"
)

// Attempt is one delivery attempt of one item, as the log keeps it.
type Attempt struct {
	Channel string `json:"channel"`
	Item    string `json:"item"` // the change's MsgID, ".e<step>" for an escalation
	Alarm   string `json:"alarm"`
	What    string `json:"what"`
	// Delivery is the message's X-Meshmon-Delivery: the same on every
	// attempt of the same message.
	Delivery string    `json:"delivery"`
	Items    int       `json:"items"` // how many items the message carried (more than 1: a summary)
	Reason   string    `json:"reason,omitempty"`
	At       time.Time `json:"at"`
	Outcome  string    `json:"outcome"`
	Error    string    `json:"error,omitempty"`
	// Holder and Until are a claim's (OutcomeSending): the runner that
	// sends, and when its send has ended at the latest.
	Holder string    `json:"holder,omitempty"`
	Until  time.Time `json:"until,omitzero"`
}

// Store is a tenant's notification state at central.
type Store struct {
	js                        jetstream.JetStream
	cfg, secrets, outbox, esc jetstream.KeyValue
	log                       jetstream.Stream
}

// Open opens the tenant's notification buckets and log, creating those
// that are missing with as many replicas as ALARMS (or EVENTS) has. The
// runner at central opens it so (Run).
func Open(ctx context.Context, js jetstream.JetStream) (*Store, error) {
	return open(ctx, js, true)
}

// OpenMade opens the tenant's notification buckets and log as the runner
// made them, waiting for those not made yet until ctx is done: a tenant's
// admin may not make a stream or bucket (its configuration could
// re-publish on any subject of the account as the server; tenancy), and
// the CLI opens it so.
func OpenMade(ctx context.Context, js jetstream.JetStream) (*Store, error) {
	var st *Store
	err := bus.WaitMade(ctx, js, func(ctx context.Context) (err error) {
		st, err = open(ctx, js, false)
		return err
	})
	return st, err
}

func open(ctx context.Context, js jetstream.JetStream, create bool) (*Store, error) {
	replicas := 1
	for _, name := range []string{alarm.Stream, "EVENTS"} {
		if s, err := js.Stream(ctx, name); err == nil {
			replicas = s.CachedInfo().Config.Replicas
			break
		}
	}
	st := &Store{js: js}
	for _, b := range []struct {
		kv   *jetstream.KeyValue
		name string
		desc string
		hist uint8
	}{
		{&st.cfg, ConfigBucket, "meshmon notification channels and rules", 5},
		{&st.secrets, SecretsBucket, "meshmon notification channel secrets (admins and the runner only)", 1},
		{&st.outbox, OutboxBucket, "meshmon notifications still to deliver", 1},
		{&st.esc, EscalationsBucket, "meshmon pending escalations", 1},
	} {
		kv, err := js.KeyValue(ctx, b.name)
		if create && errors.Is(err, jetstream.ErrBucketNotFound) {
			kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: b.name, Description: b.desc, History: b.hist,
				Storage: jetstream.FileStorage, Replicas: replicas})
		}
		if err != nil {
			return nil, fmt.Errorf("bucket %s: %w", b.name, err)
		}
		*b.kv = kv
	}
	s, err := js.Stream(ctx, LogStream)
	if create && errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = createLog(ctx, js, replicas, logMaxBytes(ctx, js, replicas))
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", LogStream, err)
	}
	st.log = s
	return st, nil
}

// logMaxBytes sizes the delivery log: 256 MiB, or a twentieth of the
// account's disk (divided among the replicas, at least 1 MiB) when that is
// less. A tenant's EVENTS and METRICS take 45% of its disk each
// (provision.StreamLimits), and a stream's size is reserved whole: a
// fixed 256 MiB did not fit a tenant of less than about 2.5 GiB, whose
// runner then failed to open its store again and again.
func logMaxBytes(ctx context.Context, js jetstream.JetStream, replicas int) int64 {
	const most = 256 << 20
	info, err := js.AccountInfo(ctx)
	if err != nil || info.Limits.MaxStore <= 0 {
		return most
	}
	return min(most, max(info.Limits.MaxStore/20/int64(max(replicas, 1)), 1<<20))
}

// createLog makes the delivery log at size, or at half of it, and so on
// down to 1 MiB, while its peers have no room for it. A stream's size is
// reserved whole on each replica's peer, and outside operator mode the
// account has no limit to size it by (logMaxBytes): a central peer whose
// disk EVENTS and METRICS nearly fill refused 256 MiB again and again.
func createLog(ctx context.Context, js jetstream.JetStream, replicas int, size int64) (jetstream.Stream, error) {
	for {
		s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: LogStream, Description: "meshmon notification delivery attempts",
			Subjects: []string{"notify.log.>"}, Retention: jetstream.LimitsPolicy, Storage: jetstream.FileStorage,
			MaxAge: 30 * 24 * time.Hour, MaxBytes: size, Discard: jetstream.DiscardOld, Replicas: replicas})
		if err == nil || size <= 1<<20 || !noRoom(err) {
			return s, err
		}
		size = max(size/2, 1<<20)
	}
}

// noRoom reports whether err is JetStream's refusal of a stream for want
// of storage: on the peer (10047), in the account (10023), or on enough
// peers to place its replicas (10005).
func noRoom(err error) bool {
	var api *jetstream.APIError
	if !errors.As(err, &api) {
		return false
	}
	switch api.ErrorCode {
	case 10047, 10023:
		return true
	case 10005:
		return strings.Contains(api.Description, "insufficient")
	}
	return false
}

// Settings are the tenant's channels and rules.
type Settings struct {
	Channels map[string]notify.Channel
	Rules    []notify.Rule // by name
}

// ChannelNames lists the channels, sorted.
func (c Settings) ChannelNames() []string {
	var out []string
	for n := range c.Channels {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Settings reads the channels and rules.
func (s *Store) Settings(ctx context.Context) (Settings, error) {
	es, err := readAll(ctx, s.cfg)
	if err != nil {
		return Settings{}, err
	}
	vals := map[string][]byte{}
	for _, e := range es {
		vals[e.Key()] = e.Value()
	}
	return settingsFrom(vals)
}

// settingsFrom decodes the config bucket's keys and values.
func settingsFrom(vals map[string][]byte) (Settings, error) {
	c := Settings{Channels: map[string]notify.Channel{}}
	for k, v := range vals {
		switch {
		case strings.HasPrefix(k, "channel."):
			var ch notify.Channel
			if err := json.Unmarshal(v, &ch); err != nil {
				return Settings{}, fmt.Errorf("%s: %w", k, err)
			}
			c.Channels[ch.Name] = ch
		case strings.HasPrefix(k, "rule."):
			var r notify.Rule
			if err := json.Unmarshal(v, &r); err != nil {
				return Settings{}, fmt.Errorf("%s: %w", k, err)
			}
			c.Rules = append(c.Rules, r)
		}
	}
	slices.SortFunc(c.Rules, func(a, b notify.Rule) int { return strings.Compare(a.Name, b.Name) })
	return c, nil
}

// readAll reads every live key of a bucket with its value.
func readAll(ctx context.Context, kv jetstream.KeyValue) ([]jetstream.KeyValueEntry, error) {
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	var out []jetstream.KeyValueEntry
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("watch ended")
			}
			if e == nil {
				return out, nil
			}
			out = append(out, e)
		}
	}
}

// PutChannel adds a channel (or, with replace, replaces one) and, when
// secret is not nil, its secret. A channel that needs a secret is
// refused without one. It returns ErrExists when the channel exists and
// replace is false.
func (s *Store) PutChannel(ctx context.Context, ch notify.Channel, secret []byte, replace bool) error {
	if err := ch.Validate(); err != nil {
		return err
	}
	if !replace {
		if _, err := s.cfg.Get(ctx, "channel."+ch.Name); err == nil {
			return fmt.Errorf("channel %s: %w", ch.Name, ErrExists)
		}
	}
	if secret == nil && ch.NeedsSecret() {
		if _, err := s.secrets.Get(ctx, ch.Name); err != nil {
			return fmt.Errorf("%w: channel %s: a %s channel needs its secret (--secret-file)", notify.ErrInvalid, ch.Name, ch.Type)
		}
	}
	if secret != nil {
		if _, err := s.secrets.Put(ctx, ch.Name, secret); err != nil {
			return fmt.Errorf("channel %s secret: %w", ch.Name, err)
		}
	}
	b, err := json.Marshal(ch)
	if err != nil {
		return err
	}
	_, err = s.cfg.Put(ctx, "channel."+ch.Name, b)
	return err
}

// DeleteChannel removes a channel and its secret; it is refused while a
// rule names it. It returns ErrNotFound when there is no such channel.
func (s *Store) DeleteChannel(ctx context.Context, name string) error {
	c, err := s.Settings(ctx)
	if err != nil {
		return err
	}
	if _, ok := c.Channels[name]; !ok {
		return fmt.Errorf("channel %s: %w", name, ErrNotFound)
	}
	for _, r := range c.Rules {
		uses := slices.Contains(r.Channels, name) || slices.ContainsFunc(r.Escalation, func(st notify.Step) bool { return st.Channel == name })
		if uses {
			return fmt.Errorf("channel %s: rule %s uses it: remove or change the rule first", name, r.Name)
		}
	}
	if err := s.cfg.Delete(ctx, "channel."+name); err != nil {
		return err
	}
	if err := s.secrets.Purge(ctx, name); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return err
	}
	return nil
}

// Secret is a channel's secret (nil when it has none).
func (s *Store) Secret(ctx context.Context, name string) ([]byte, error) {
	e, err := s.secrets.Get(ctx, name)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return e.Value(), nil
}

// Channels lists the channels by name, each with whether its secret is
// set (never the secret itself): what 'notify channel list' prints.
func (s *Store) Channels(ctx context.Context) ([]notify.ChannelView, error) {
	set, err := s.Settings(ctx)
	if err != nil {
		return nil, err
	}
	out := []notify.ChannelView{}
	for _, n := range set.ChannelNames() {
		sec, err := s.Secret(ctx, n)
		if err != nil {
			return nil, err
		}
		out = append(out, notify.ChannelView{Channel: set.Channels[n], SecretSet: sec != nil})
	}
	return out, nil
}

// PutRule adds a rule (or, with replace, replaces one); every channel
// it names must exist. It returns ErrExists when the rule exists and
// replace is false.
func (s *Store) PutRule(ctx context.Context, r notify.Rule, replace bool) error {
	c, err := s.Settings(ctx)
	if err != nil {
		return err
	}
	if !replace && slices.ContainsFunc(c.Rules, func(x notify.Rule) bool { return x.Name == r.Name }) {
		return fmt.Errorf("rule %s: %w", r.Name, ErrExists)
	}
	if err := r.Validate(c.ChannelNames()); err != nil {
		return err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = s.cfg.Put(ctx, "rule."+r.Name, b)
	return err
}

// DeleteRule removes a rule; it returns ErrNotFound when there is none.
func (s *Store) DeleteRule(ctx context.Context, name string) error {
	if _, err := s.cfg.Get(ctx, "rule."+name); errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("rule %s: %w", name, ErrNotFound)
	} else if err != nil {
		return err
	}
	return s.cfg.Delete(ctx, "rule."+name)
}

// Test sends a test message to the channel now, from the caller, past
// its rate limit and outside the log, and returns its delivery ID.
func (s *Store) Test(ctx context.Context, tenant, name string, sender *notify.Sender) (string, error) {
	c, err := s.Settings(ctx)
	if err != nil {
		return "", err
	}
	ch, ok := c.Channels[name]
	if !ok {
		return "", fmt.Errorf("channel %s: %w", name, ErrNotFound)
	}
	secret, err := s.Secret(ctx, name)
	if err != nil {
		return "", err
	}
	now := time.Now().UTC()
	delivery := fmt.Sprintf("test.%s.%d", name, now.UnixNano())
	a := alarm.Alarm{ID: "test.meshmon.test", Tenant: tenant, Site: "test", Device: "meshmon", Check: "test", Kind: "test",
		Severity: "info", State: alarm.StateOpen, Message: "a test of channel " + name + " (meshmon notify channel test)",
		Count: 1, FirstSeen: now, LastSeen: now, Opened: 1, Seq: 1}
	m := notify.Message{Items: []notify.Item{{ID: delivery, What: "test", At: now, Alarm: a}}}
	return delivery, sender.Send(ctx, tenant, ch, secret, delivery, m)
}
