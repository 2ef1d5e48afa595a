package notifybus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/notify"
)

// record appends attempts of one message to the log, one per item, with
// a context of its own: an attempt that was made is recorded even when
// the runner is being stopped. It returns each item's log sequence.
func (s *Store) record(ctx context.Context, a Attempt, items []notify.Item) ([]uint64, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	seqs := make([]uint64, 0, len(items))
	for _, it := range items {
		a.Item, a.Alarm, a.What = it.ID, it.Alarm.ID, it.What
		b, err := json.Marshal(a)
		if err != nil {
			return seqs, err
		}
		ack, err := s.js.Publish(ctx, LogSubject(a.Channel, it.ID), b)
		if err != nil {
			return seqs, fmt.Errorf("delivery log: %w", err)
		}
		seqs = append(seqs, ack.Sequence)
	}
	return seqs, nil
}

// claim records a's claim (OutcomeSending) on one item, provided the
// item's last attempt in the log is still the one at seq (0: none): of
// two runners claiming an item at once, one wins. It returns the
// claim's sequence; errClaimed when the log moved.
func (s *Store) claim(ctx context.Context, a Attempt, it notify.Item, seq uint64) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	a.Item, a.Alarm, a.What = it.ID, it.Alarm.ID, it.What
	b, err := json.Marshal(a)
	if err != nil {
		return 0, err
	}
	ack, err := s.js.Publish(ctx, LogSubject(a.Channel, it.ID), b, jetstream.WithExpectLastSequencePerSubject(seq))
	if isStale(err) {
		return 0, errClaimed
	}
	if err != nil {
		return 0, fmt.Errorf("delivery log: claim: %w", err)
	}
	return ack.Sequence, nil
}

// lastAttempt returns the item's last attempt on the channel and its
// log sequence (0: none).
func (s *Store) lastAttempt(ctx context.Context, channel, item string) (Attempt, uint64, error) {
	var a Attempt
	m, err := s.log.GetLastMsgForSubject(ctx, LogSubject(channel, item))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return a, 0, nil
	}
	if err != nil {
		return a, 0, err
	}
	if err := json.Unmarshal(m.Data, &a); err != nil {
		return a, 0, fmt.Errorf("delivery log %s: %w", m.Subject, err)
	}
	return a, m.Sequence, nil
}

// Log reads the last limit attempts (0: all) of channel ("": every
// channel), oldest first. A channel that is no channel name (a wildcard
// or a dot in it would widen the log's filter) is an error.
func (s *Store) Log(ctx context.Context, channel string, limit int) ([]Attempt, error) {
	if channel != "" {
		if err := meshmon.ValidateName("channel", channel); err != nil {
			return nil, fmt.Errorf("notify log: %w", err)
		}
	}
	if limit < 0 {
		return nil, fmt.Errorf("notify log: limit %d is negative; use 0 for all", limit)
	}
	info, err := s.log.Info(ctx)
	if err != nil {
		return nil, err
	}
	if info.State.Msgs == 0 {
		return nil, nil
	}
	filter := "notify.log.>"
	if channel != "" {
		filter = "notify.log." + channel + ".>"
	}
	c, err := s.log.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		return nil, err
	}
	var out []Attempt
	for {
		batch, err := c.Fetch(500, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return nil, err
		}
		got, left := 0, uint64(0)
		for m := range batch.Messages() {
			got++
			var a Attempt
			if err := json.Unmarshal(m.Data(), &a); err == nil {
				out = append(out, a)
			}
			if md, err := m.Metadata(); err == nil {
				left = md.NumPending
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, err
		}
		if limit > 0 && len(out) > limit {
			out = out[len(out)-limit:]
		}
		if got == 0 || left == 0 {
			return out, nil
		}
	}
}

// OutboxLen returns how many items wait in the outbox.
func (s *Store) OutboxLen(ctx context.Context) (int, error) {
	keys, err := s.outbox.ListKeys(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for range keys.Keys() {
		n++
	}
	return n, nil
}
