package notifybus

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/internal/backoff"
	"github.com/meshmon/meshmon/notify"
)

// work takes the escalation steps that are due and delivers the outbox:
// at every tick, and when a change woke it.
func (r *runner) work(ctx context.Context) {
	select {
	case <-r.ready:
	case <-ctx.Done():
		return
	}
	t := time.NewTicker(r.cfg.Tick)
	defer t.Stop()
	b := backoff.New(r.cfg.RetryFirst/4+time.Millisecond, 10*time.Second)
	for {
		if err := r.pass(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("notify: pass", "err", err)
			b.Wait(ctx)
		} else {
			b.Reset()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.wake:
		}
	}
}

func (r *runner) pass(ctx context.Context) error {
	r.mu.Lock()
	escGen, escDue, outGen, dirty := r.escGen, r.escDue, r.outboxGen, r.outboxDirty
	r.mu.Unlock()
	// Escalate only once every change so far is applied: an
	// acknowledgement still in the stream must stop it first.
	if r.caughtUp.Load() && !r.cfg.Now().Before(escDue) {
		next, err := r.escalate(ctx)
		if err != nil {
			return err
		}
		r.mu.Lock()
		if r.escGen == escGen {
			r.escDue = next
		}
		r.mu.Unlock()
	}
	if !dirty {
		r.mu.Lock()
		dirty = r.outboxDirty
		outGen = r.outboxGen
		r.mu.Unlock()
		if !dirty {
			return nil
		}
	}
	left, err := r.deliver(ctx)
	if err != nil {
		return err
	}
	if left == 0 {
		r.mu.Lock()
		if r.outboxGen == outGen {
			r.outboxDirty = false
		}
		r.mu.Unlock()
	}
	return nil
}

// touch tells the worker that the outbox, or the escalations, may have
// work, and wakes it.
func (r *runner) touch(outbox, esc bool) {
	r.mu.Lock()
	if outbox {
		r.outboxGen++
		r.outboxDirty = true
	}
	if esc {
		r.escGen++
		r.escDue = time.Time{}
	}
	r.mu.Unlock()
	r.poke()
}

// escalate takes the due steps of the pending escalations: each step's
// item goes to the outbox before the escalation moves on, so a runner
// that dies in between takes the same step again, and the outbox holds
// it once.
func (r *runner) escalate(ctx context.Context) (time.Time, error) {
	conf := r.conf.Load()
	es, err := readAll(ctx, r.st.esc)
	if err != nil {
		return time.Time{}, err
	}
	now := r.cfg.Now()
	next := now.Add(time.Hour) // looked at again in an hour at the latest
	sent := false
	defer func() {
		if sent {
			r.touch(true, false)
		}
	}()
	for _, e := range es {
		var p notify.Pending
		if err := json.Unmarshal(e.Value(), &p); err != nil {
			r.log.Error("notify: bad escalation, removed", "key", e.Key(), "err", err)
			_ = r.st.esc.Delete(ctx, e.Key(), jetstream.LastRevision(e.Revision()))
			continue
		}
		i := slices.IndexFunc(conf.Rules, func(x notify.Rule) bool { return x.Name == p.Rule })
		if i < 0 {
			_ = r.st.esc.Delete(ctx, e.Key(), jetstream.LastRevision(e.Revision()))
			continue
		}
		send, rest := notify.Escalate(p, conf.Rules[i], now)
		if send != nil {
			if err := r.st.enqueue(ctx, *send, now); err != nil {
				return time.Time{}, err
			}
			sent = true
		}
		switch {
		case rest == nil:
			err = r.st.esc.Delete(ctx, e.Key(), jetstream.LastRevision(e.Revision()))
		case send != nil:
			b, _ := json.Marshal(rest)
			_, err = r.st.esc.Update(ctx, e.Key(), b, e.Revision())
		}
		// A stale revision: the consumer changed it meanwhile; the
		// next pass sees its version.
		if err != nil && !isStale(err) {
			return time.Time{}, err
		}
		if rest != nil {
			if due := rest.Next(conf.Rules[i]); due.Before(next) {
				next = due
			}
		}
	}
	return next, nil
}

func isStale(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) || errors.As(err, &apiErr) && (apiErr.ErrorCode == 10071 || apiErr.ErrorCode == 10164)
}

// deliver sends what waits in the outbox, channel by channel, within
// each channel's rate limit and retry backoff.
func (r *runner) deliver(ctx context.Context) (left int, err error) {
	// Read before the outbox: caught up then means every late change
	// of the catch-up is in what is read.
	caughtUp := r.caughtUp.Load()
	es, err := readAll(ctx, r.st.outbox)
	if err != nil {
		return 0, err
	}
	by := map[string][]outboxEntry{}
	for _, e := range es {
		var o outboxEntry
		if err := json.Unmarshal(e.Value(), &o); err != nil {
			r.log.Error("notify: bad outbox entry, removed", "key", e.Key(), "err", err)
			_ = r.st.outbox.Delete(ctx, e.Key())
			continue
		}
		by[o.Channel] = append(by[o.Channel], o)
	}
	names := make([]string, 0, len(by))
	for n := range by {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if ctx.Err() != nil {
			return 1, nil
		}
		l, err := r.deliverChannel(ctx, n, by[n], caughtUp)
		if err != nil {
			return 1, err
		}
		left += l
	}
	return left, nil
}

// deliverChannel sends what the channel may send now of its entries and
// returns how many are left waiting.
func (r *runner) deliverChannel(ctx context.Context, name string, entries []outboxEntry, caughtUp bool) (int, error) {
	conf := r.conf.Load()
	ch, ok := conf.Channels[name]
	now := r.cfg.Now()
	if !ok {
		for _, o := range entries {
			a := Attempt{Channel: name, Delivery: o.Item.ID + "." + name, Items: 1, At: now, Outcome: OutcomeDropped, Error: "no such channel: it was removed"}
			if err := r.st.record(ctx, a, []notify.Item{o.Item}); err != nil {
				return len(entries), err
			}
			r.log.Warn("notify: channel removed, notification dropped", "channel", name, "item", o.Item.ID)
			_ = r.st.outbox.Delete(ctx, outboxKey(name, o.Item.ID))
			delete(r.checked, outboxKey(name, o.Item.ID))
		}
		return 0, nil
	}
	cs := r.chanState(ch)
	if now.Before(cs.retryAt) {
		return len(entries), nil
	}
	slices.SortStableFunc(entries, func(a, b outboxEntry) int {
		if c := a.Queued.Compare(b.Queued); c != 0 {
			return c
		}
		return strings.Compare(a.Item.ID, b.Item.ID)
	})
	items, oldest, newest, err := r.pending(ctx, name, entries)
	if err != nil {
		return len(entries), err
	}
	lateReady := !oldest.IsZero() && (caughtUp && now.Sub(newest) >= r.cfg.LateQuiet || now.Sub(oldest) >= r.cfg.LateWait)
	msgs := notify.Batch(items, cs.bucket.Tokens(now), lateReady)
	if len(msgs) == 0 {
		return len(items), nil
	}
	secret, err := r.st.Secret(ctx, name)
	if err != nil {
		return len(items), err
	}
	left := len(items)
	for _, m := range msgs {
		if ctx.Err() != nil || !cs.bucket.Take(now) {
			break
		}
		if !r.send(ctx, cs, secret, m) {
			break
		}
		left -= len(m.Items)
	}
	return left, nil
}

// pending drops the entries the log says were delivered (a runner that
// died before it emptied the outbox) and returns the rest's items, and
// when the oldest and the newest late one were queued (zero: none). The
// log is asked once per item per runner: while this runner runs, only it
// delivers.
func (r *runner) pending(ctx context.Context, channel string, entries []outboxEntry) (items []notify.Item, oldest, newest time.Time, err error) {
	for _, o := range entries {
		key := outboxKey(channel, o.Item.ID)
		if !r.checked[key] {
			done, err := r.st.delivered(ctx, channel, o.Item.ID)
			if err != nil {
				return nil, oldest, newest, err
			}
			if done {
				_ = r.st.outbox.Delete(ctx, key)
				continue
			}
			r.checked[key] = true
		}
		if o.Item.Late {
			if oldest.IsZero() || o.Queued.Before(oldest) {
				oldest = o.Queued
			}
			if o.Queued.After(newest) {
				newest = o.Queued
			}
		}
		items = append(items, o.Item)
	}
	return items, oldest, newest, nil
}

// send makes one attempt of one message and records it; it reports
// whether the channel took it.
func (r *runner) send(ctx context.Context, cs *chanState, secret []byte, m notify.Message) bool {
	delivery := deliveryID(cs.ch.Name, m)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.SendTimeout)
	err := r.sender.Send(sctx, r.cfg.Tenant, cs.ch, secret, delivery, m)
	cancel()
	a := Attempt{Channel: cs.ch.Name, Delivery: delivery, Items: len(m.Items), Reason: m.Reason, At: r.cfg.Now(), Outcome: OutcomeDelivered}
	if err != nil {
		a.Outcome, a.Error = OutcomeFailed, err.Error()
		wait := cs.retry.Next()
		cs.retryAt = r.cfg.Now().Add(wait)
		r.log.Warn("notify: delivery failed", "channel", cs.ch.Name, "delivery", delivery, "retry_in", wait, "err", err)
	} else {
		cs.retry.Reset()
	}
	if rerr := r.st.record(ctx, a, m.Items); rerr != nil {
		// Delivered but not recorded: the next attempt sends it again
		// with the same delivery ID.
		r.log.Warn("notify: delivery not recorded", "channel", cs.ch.Name, "delivery", delivery, "err", rerr)
		return false
	}
	if err != nil {
		return false
	}
	for _, it := range m.Items {
		key := outboxKey(cs.ch.Name, it.ID)
		_ = r.st.outbox.Delete(context.WithoutCancel(ctx), key)
		delete(r.checked, key)
	}
	return true
}

// deliveryID names a message the same on every attempt: the item and
// channel, or for a summary a digest of its items.
func deliveryID(channel string, m notify.Message) string {
	if len(m.Items) == 1 && m.Reason == "" {
		return m.Items[0].ID + "." + channel
	}
	h := sha256.New()
	for _, it := range m.Items {
		h.Write([]byte(it.ID + "\n"))
	}
	return "summary." + hex.EncodeToString(h.Sum(nil)[:12]) + "." + channel
}

// chanState is the channel's limiter and backoff, made again when the
// channel changed.
func (r *runner) chanState(ch notify.Channel) *chanState {
	cs := r.chans[ch.Name]
	if cs == nil || !sameChannel(cs.ch, ch) {
		cs = &chanState{ch: ch, bucket: notify.NewBucket(ch), retry: backoff.New(r.cfg.RetryFirst, r.cfg.RetryMax)}
		r.chans[ch.Name] = cs
	}
	return cs
}

func sameChannel(a, b notify.Channel) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}
