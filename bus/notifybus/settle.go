package notifybus

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/alarm"
)

// settle applies the settle time to a channel's outbox entries (see
// notify.Decide): it returns the entries to send now and how many are
// held back still. A page of a correlatable alarm (HoldUntil) waits until
// then, and is then sent only if the alarm, read again from the alarms
// bucket, is still open, not a symptom and not in maintenance; otherwise
// it is withdrawn. A clear (IfPaged) whose opening has a page still held
// on the channel withdraws both: the alarm cleared before it settled, and
// never paged. So which of a parent's and its children's events comes
// first no longer decides who is paged.
//
// A withdrawal is recorded in the delivery log on condition that the
// item's log has not moved (as a claim is), so of a runner withdrawing a
// page and one sending it, one wins; the held pages of a pair are
// withdrawn before their clear, and removed from the outbox only after
// it, so a runner stopped in between completes the pair the next time.
func (r *runner) settle(ctx context.Context, channel string, entries []outboxEntry, caughtUp bool, now time.Time) ([]outboxEntry, int, error) {
	type opening struct {
		id     string
		opened int
	}
	held := map[opening][]outboxEntry{}
	for _, o := range entries {
		if !o.HoldUntil.IsZero() {
			k := opening{o.Item.Alarm.ID, o.Item.Alarm.Opened}
			held[k] = append(held[k], o)
		}
	}
	if len(held) == 0 {
		return entries, 0, nil
	}
	gone := map[string]bool{} // item IDs withdrawn
	for _, o := range entries {
		hs := held[opening{o.Item.Alarm.ID, o.Item.Alarm.Opened}]
		if !o.IfPaged || len(hs) == 0 {
			continue
		}
		all := true
		for _, h := range hs {
			ok, err := r.withdraw(ctx, channel, h, "the alarm cleared within the settle time", now, false)
			if err != nil {
				return entries, 0, err
			}
			all = all && ok
		}
		if !all {
			continue // one went out meanwhile: its clear goes too
		}
		ok, err := r.withdraw(ctx, channel, o, "the alarm cleared within the settle time and never paged", now, true)
		if err != nil {
			return entries, 0, err
		}
		if !ok {
			continue // its log moved: the next pass completes the pair
		}
		for _, h := range hs {
			r.done(ctx, outboxKey(channel, h.Item.ID))
			gone[h.Item.ID] = true
		}
		gone[o.Item.ID] = true
		r.log.Info("notify: alarm cleared within its settle time, not paged", "channel", channel, "alarm", o.Item.Alarm.ID)
	}
	var ready []outboxEntry
	waiting := 0
	for _, o := range entries {
		switch {
		case gone[o.Item.ID]:
			continue
		case o.HoldUntil.IsZero():
			ready = append(ready, o)
			continue
		case now.Before(o.HoldUntil):
			waiting++
			continue
		}
		why, wait, err := r.recheck(ctx, o, caughtUp, now)
		switch {
		case err != nil:
			return entries, 0, err
		case wait:
			waiting++
		case why == "":
			ready = append(ready, o)
		default:
			if _, err := r.withdraw(ctx, channel, o, why, now, true); err != nil {
				return entries, 0, err
			}
		}
	}
	return ready, waiting, nil
}

// recheck reads the alarm of a held page whose settle time is over and
// says why to withdraw the page ("": send it), or to wait: the alarm
// cleared (or opened again) and its clear is yet to reach the outbox,
// where it withdraws the page with itself. A runner that has applied
// every change and still finds no clear a whole settle time later (no
// rule pages it any more) withdraws the page alone.
func (r *runner) recheck(ctx context.Context, o outboxEntry, caughtUp bool, now time.Time) (why string, wait bool, err error) {
	cur, ok, err := r.currentAlarm(ctx, o.Item.Alarm.ID)
	switch {
	case err != nil:
		return "", false, err
	case !ok:
		return "", false, nil // no alarms bucket to read: send as decided
	case cur.Opened != o.Item.Alarm.Opened || cur.State != alarm.StateOpen:
		if caughtUp && !now.Before(o.HoldUntil.Add(o.HoldUntil.Sub(o.Queued))) {
			return "the alarm cleared within the settle time", false, nil
		}
		return "", true, nil
	case cur.SymptomOf != "":
		return "the alarm became a symptom of " + cur.SymptomOf + " within the settle time", false, nil
	case cur.Maintenance != "":
		return "the alarm went into maintenance window " + cur.Maintenance + " within the settle time", false, nil
	}
	return "", false, nil
}

// withdraw records o as withdrawn (why) unless its log shows it claimed or
// delivered; it reports whether it is withdrawn (now or before), and with
// remove takes it out of the outbox.
func (r *runner) withdraw(ctx context.Context, channel string, o outboxEntry, why string, now time.Time, remove bool) (bool, error) {
	a, seq, err := r.st.lastAttempt(ctx, channel, o.Item.ID)
	if err != nil {
		return false, err
	}
	switch a.Outcome {
	case OutcomeWithdrawn:
	case OutcomeSending, OutcomeDelivered, OutcomeUncertain:
		return false, nil
	default:
		w := Attempt{Channel: channel, Delivery: o.Item.ID + "." + channel, Items: 1, At: now, Outcome: OutcomeWithdrawn, Error: why}
		if _, err := r.st.claim(ctx, w, o.Item, seq); errors.Is(err, errClaimed) {
			delete(r.known, outboxKey(channel, o.Item.ID))
			return false, nil // the log moved: the next pass reads it again
		} else if err != nil {
			return false, err
		}
		r.log.Info("notify: held page withdrawn", "channel", channel, "item", o.Item.ID, "why", why)
	}
	if remove {
		r.done(ctx, outboxKey(channel, o.Item.ID))
	}
	return true, nil
}

// currentAlarm reads an alarm from the tenant's alarms bucket (written by
// the alarm processor); ok is false when there is no bucket or no such
// alarm.
func (r *runner) currentAlarm(ctx context.Context, id string) (alarm.Alarm, bool, error) {
	if r.alarms == nil {
		kv, err := r.st.js.KeyValue(ctx, alarm.Bucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			return alarm.Alarm{}, false, nil
		}
		if err != nil {
			return alarm.Alarm{}, false, err
		}
		r.alarms = kv
	}
	e, err := r.alarms.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return alarm.Alarm{}, false, nil
	}
	if err != nil {
		return alarm.Alarm{}, false, err
	}
	var a alarm.Alarm
	if err := json.Unmarshal(e.Value(), &a); err != nil {
		return alarm.Alarm{}, false, err
	}
	return a, true, nil
}
