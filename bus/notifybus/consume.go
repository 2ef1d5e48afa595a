package notifybus

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/alarm"
	"github.com/meshmon/meshmon/internal/backoff"
	"github.com/meshmon/meshmon/notify"
)

// outboxEntry is an item waiting in the outbox for its channel.
type outboxEntry struct {
	Channel string      `json:"channel"`
	Item    notify.Item `json:"item"`
	Queued  time.Time   `json:"queued"`
	// HoldUntil and IfPaged are the Send's: a page of a correlatable
	// alarm held for its settle time, and the clear that goes only if
	// no page of its opening is still held (see settle). Kept in the
	// outbox, they survive a runner's failover as the entry does.
	HoldUntil time.Time `json:"hold_until,omitzero"`
	IfPaged   bool      `json:"if_paged,omitempty"`
}

func outboxKey(channel, item string) string { return channel + "." + item }

// consume takes the alarm changes in order: each is decided, its
// notifications put in the outbox and its escalations in their bucket,
// and only then acknowledged. A change given again (a runner that died
// before its ack) finds its outbox entries, and the log of what was
// delivered, where it left them.
func (r *runner) consume(ctx context.Context, js jetstream.JetStream, cons jetstream.Consumer) {
	select {
	case <-r.ready:
	case <-ctx.Done():
		return
	}
	b := backoff.New(r.cfg.RetryFirst/4+time.Millisecond, 10*time.Second)
	for ctx.Err() == nil {
		batch, err := cons.Fetch(64, jetstream.FetchMaxWait(time.Second))
		if err == nil {
			err = nilIfNoMessages(batch.Error())
		}
		if errors.Is(err, nats.ErrNoResponders) {
			// No consumer answered: gone, or a leader not elected yet.
			if _, cerr := js.Consumer(ctx, alarm.Stream, Consumer); errors.Is(cerr, jetstream.ErrConsumerNotFound) {
				err = cerr
			}
		}
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) {
			// Someone removed it: make it again (it starts from the
			// stream's beginning, and the outbox and the log keep
			// what was done from being done twice).
			r.log.Warn("notify: consumer gone, making it again", "err", err)
			if cons, err = r.consumer(ctx, js, r.lastSeq.Load()); err != nil {
				return
			}
			continue
		}
		if err != nil {
			r.log.Warn("notify: fetch", "err", err)
			b.Wait(ctx)
			continue
		}
		got := 0
		for m := range batch.Messages() {
			got++
			r.take(ctx, m, b)
		}
		if got == 0 && nilIfNoMessages(batch.Error()) == nil {
			r.caughtUp.Store(true)
		}
		if got > 0 {
			r.poke()
		}
	}
}

func nilIfNoMessages(err error) error {
	if errors.Is(err, jetstream.ErrNoMessages) {
		return nil
	}
	return err
}

// take handles one message and acknowledges it, or gives it back.
func (r *runner) take(ctx context.Context, m jetstream.Msg, b *backoff.Backoff) {
	// Acks and naks go out even when ctx is done: a change given back at
	// once is redelivered at once to the next runner.
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if ctx.Err() != nil {
		_ = m.Nak()
		return
	}
	var c alarm.Change
	if err := json.Unmarshal(m.Data(), &c); err != nil || c.Alarm.ID == "" {
		r.log.Error("notify: not an alarm change, skipped", "subject", m.Subject(), "err", err)
		_ = m.Term()
		return
	}
	if err := r.apply(ctx, c); err != nil {
		r.log.Warn("notify: change not applied, given back", "change", c.MsgID(), "err", err)
		_ = m.NakWithDelay(b.Next())
		return
	}
	b.Reset()
	if err := m.DoubleAck(bg); err != nil {
		r.log.Warn("notify: ack", "change", c.MsgID(), "err", err)
	}
	if md, err := m.Metadata(); err == nil {
		r.caughtUp.Store(md.NumPending == 0)
		r.lastSeq.Store(md.Sequence.Stream)
	}
}

// apply puts what the change calls for into the outbox and the
// escalations bucket; doing it twice does no more than once.
func (r *runner) apply(ctx context.Context, c alarm.Change) error {
	conf := r.conf.Load()
	now := r.cfg.Now()
	d := notify.Decide(c, conf.Rules, now)
	for _, s := range d.Sends {
		if err := r.st.enqueue(ctx, s, now); err != nil {
			return err
		}
	}
	if d.Cancel {
		if err := r.st.cancelEscalations(ctx, c.Alarm.ID); err != nil {
			return err
		}
	}
	for _, p := range d.Schedule {
		if err := r.st.schedule(ctx, p); err != nil {
			return err
		}
	}
	if len(d.Sends) > 0 || d.Cancel || len(d.Schedule) > 0 {
		r.touch(len(d.Sends) > 0, d.Cancel || len(d.Schedule) > 0)
	}
	return nil
}

// poke wakes the worker.
func (r *runner) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// enqueue puts a send in the outbox unless it is there already.
func (s *Store) enqueue(ctx context.Context, snd notify.Send, now time.Time) error {
	b, err := json.Marshal(outboxEntry{Channel: snd.Channel, Item: snd.Item, Queued: now, HoldUntil: snd.HoldUntil, IfPaged: snd.IfPaged})
	if err != nil {
		return err
	}
	_, err = s.outbox.Create(ctx, outboxKey(snd.Channel, snd.Item.ID), b)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return nil
	}
	return err
}

// cancelEscalations removes the alarm's pending escalations.
func (s *Store) cancelEscalations(ctx context.Context, alarmID string) error {
	l, err := s.esc.ListKeysFiltered(ctx, alarmID+".*")
	if err != nil {
		return err
	}
	var keys []string
	for k := range l.Keys() {
		keys = append(keys, k)
	}
	for _, k := range keys {
		if err := s.esc.Delete(ctx, k); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return err
		}
	}
	return nil
}

// schedule starts an escalation unless one of the same opening of the
// alarm is under way (a change given again must not restart its clock).
func (s *Store) schedule(ctx context.Context, p notify.Pending) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	e, err := s.esc.Get(ctx, p.Key())
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		_, err = s.esc.Create(ctx, p.Key(), b)
		if errors.Is(err, jetstream.ErrKeyExists) {
			return nil
		}
		return err
	case err != nil:
		return err
	}
	var old notify.Pending
	if json.Unmarshal(e.Value(), &old) == nil && old.Opened >= p.Opened {
		return nil
	}
	_, err = s.esc.Update(ctx, p.Key(), b, e.Revision())
	return err
}
