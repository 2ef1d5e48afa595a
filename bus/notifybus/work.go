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
			if _, err := r.st.record(ctx, a, []notify.Item{o.Item}); err != nil {
				return len(entries), err
			}
			r.log.Warn("notify: channel removed, notification dropped", "channel", name, "item", o.Item.ID)
			r.done(ctx, outboxKey(name, o.Item.ID))
		}
		return 0, nil
	}
	cs := r.chanState(ch)
	if now.Before(cs.retryAt) {
		return len(entries), nil
	}
	entries, held, err := r.settle(ctx, name, entries, caughtUp, now)
	if err != nil {
		return len(entries) + held, err
	}
	slices.SortStableFunc(entries, func(a, b outboxEntry) int {
		if c := a.Queued.Compare(b.Queued); c != 0 {
			return c
		}
		return strings.Compare(a.Item.ID, b.Item.ID)
	})
	items, oldest, newest, waiting, err := r.pending(ctx, name, entries)
	if err != nil {
		return len(entries), err
	}
	lateReady := !oldest.IsZero() && (caughtUp && now.Sub(newest) >= r.cfg.LateQuiet || now.Sub(oldest) >= r.cfg.LateWait)
	waiting += held
	msgs := notify.Batch(items, cs.bucket.Tokens(now), lateReady)
	if len(msgs) == 0 {
		return len(items) + waiting, nil
	}
	secret, err := r.st.Secret(ctx, name)
	if err != nil {
		return len(items) + waiting, err
	}
	left := len(items) + waiting
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

// pending returns the items of entries to send, and when the oldest and
// the newest late one were queued (zero: none), and how many wait on
// another runner's claim. Each item's delivery log is read once per
// runner (resolve), and again only when a claim finds it moved.
func (r *runner) pending(ctx context.Context, channel string, entries []outboxEntry) (items []notify.Item, oldest, newest time.Time, waiting int, err error) {
	for _, o := range entries {
		if _, ok := r.known[outboxKey(channel, o.Item.ID)]; !ok {
			send, wait, err := r.resolve(ctx, channel, o.Item)
			if err != nil {
				return nil, oldest, newest, waiting, err
			}
			if wait {
				waiting++
			}
			if !send {
				continue
			}
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
	return items, oldest, newest, waiting, nil
}

// resolve reads the item's last attempt on the channel and says whether
// to send it, or to wait: delivered, dropped or uncertain already, it is
// removed from the outbox (a runner that died before it emptied it);
// claimed by another runner whose send may not have ended, it waits;
// claimed by one whose send has ended without a record (it died in
// flight), it is logged uncertain and removed, not sent again.
func (r *runner) resolve(ctx context.Context, channel string, it notify.Item) (send, wait bool, err error) {
	key := outboxKey(channel, it.ID)
	a, seq, err := r.st.lastAttempt(ctx, channel, it.ID)
	if err != nil {
		return false, false, err
	}
	if u, ok := r.unrecorded[key]; ok && a.Outcome == OutcomeSending && a.Holder == r.id {
		seqs, err := r.st.record(ctx, u, []notify.Item{it})
		if err != nil {
			return false, false, err
		}
		delete(r.unrecorded, key)
		a, seq = u, seqs[0]
	}
	now := r.cfg.Now()
	switch {
	case a.Outcome == OutcomeDelivered || a.Outcome == OutcomeDropped || a.Outcome == OutcomeUncertain || a.Outcome == OutcomeWithdrawn:
		r.done(ctx, key)
		return false, false, nil
	case a.Outcome == OutcomeSending && a.Holder != r.id && now.Before(a.Until):
		return false, true, nil
	case a.Outcome == OutcomeSending && a.Holder != r.id:
		u := a
		u.Outcome, u.At, u.Holder, u.Until = OutcomeUncertain, now, "", time.Time{}
		u.Error = "in flight when its runner (" + a.Holder + ") stopped: not sent again"
		if _, err := r.st.claim(ctx, u, it, seq); err != nil {
			return false, !errors.Is(err, errClaimed), nil // moved: read again next pass
		}
		r.log.Warn("notify: in flight when its runner stopped; not sent again", "channel", channel, "item", it.ID, "delivery", a.Delivery, "runner", a.Holder)
		r.done(ctx, key)
		return false, false, nil
	}
	r.known[key] = seq
	return true, false, nil
}

// done removes an item from the outbox.
func (r *runner) done(ctx context.Context, key string) {
	_ = r.st.outbox.Delete(context.WithoutCancel(ctx), key)
	delete(r.known, key)
}

// send makes one attempt of one message and records it; it reports
// whether the channel took it. It claims each item first (claimSend):
// no other runner sends them until the claim is resolved or has
// expired, and none sends them again after.
func (r *runner) send(ctx context.Context, cs *chanState, secret []byte, m notify.Message) bool {
	delivery := deliveryID(cs.ch.Name, m)
	if !r.claimSend(ctx, cs.ch.Name, delivery, m) {
		return false
	}
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
	seqs, rerr := r.st.record(ctx, a, m.Items)
	for i, it := range m.Items {
		key := outboxKey(cs.ch.Name, it.ID)
		if i < len(seqs) {
			r.known[key] = seqs[i]
			continue
		}
		// Sent but not recorded: the claim stays, so no other runner
		// sends it; this one records the outcome when it reads the item
		// again (resolve).
		r.unrecorded[key] = a
		delete(r.known, key)
	}
	if rerr != nil {
		r.log.Warn("notify: delivery not recorded", "channel", cs.ch.Name, "delivery", delivery, "err", rerr)
		return false
	}
	if err != nil {
		return false
	}
	for _, it := range m.Items {
		r.done(ctx, outboxKey(cs.ch.Name, it.ID))
	}
	return true
}

// claimSend claims each item of m for this runner, on condition that its
// log has not moved since this runner read it. When one claim fails, the
// items claimed before it are released (a failed attempt, not sent) and
// it reports false.
func (r *runner) claimSend(ctx context.Context, channel, delivery string, m notify.Message) bool {
	now := r.cfg.Now()
	c := Attempt{Channel: channel, Delivery: delivery, Items: len(m.Items), Reason: m.Reason, At: now, Outcome: OutcomeSending,
		Holder: r.id, Until: now.Add(r.cfg.SendTimeout + r.cfg.ClaimMargin)}
	for i, it := range m.Items {
		key := outboxKey(channel, it.ID)
		seq, err := r.st.claim(ctx, c, it, r.known[key])
		if err == nil {
			r.known[key] = seq
			continue
		}
		delete(r.known, key)
		if ctx.Err() == nil {
			r.log.Warn("notify: claim", "channel", channel, "item", it.ID, "err", err)
		}
		rel := c
		rel.Outcome, rel.Error, rel.Holder, rel.Until = OutcomeFailed, "not sent: "+err.Error(), "", time.Time{}
		_, _ = r.st.record(ctx, rel, m.Items[:i])
		for _, it := range m.Items[:i] {
			delete(r.known, outboxKey(channel, it.ID))
		}
		return false
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
