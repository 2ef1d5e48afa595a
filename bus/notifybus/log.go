package notifybus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/notify"
)

// record appends attempts of one message to the log, one per item, with
// a context of its own: an attempt that was made is recorded even when
// the runner is being stopped.
func (s *Store) record(ctx context.Context, a Attempt, items []notify.Item) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	for _, it := range items {
		a.Item, a.Alarm, a.What = it.ID, it.Alarm.ID, it.What
		b, err := json.Marshal(a)
		if err != nil {
			return err
		}
		if _, err := s.js.Publish(ctx, LogSubject(a.Channel, it.ID), b); err != nil {
			return fmt.Errorf("delivery log: %w", err)
		}
	}
	return nil
}

// delivered reports whether the log holds a delivery of the item on the
// channel: its last attempt there was delivered.
func (s *Store) delivered(ctx context.Context, channel, item string) (bool, error) {
	m, err := s.log.GetLastMsgForSubject(ctx, LogSubject(channel, item))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var a Attempt
	if err := json.Unmarshal(m.Data, &a); err != nil {
		return false, err
	}
	return a.Outcome == OutcomeDelivered, nil
}

// Log reads the last limit attempts (0: all) of channel ("": every
// channel), oldest first.
func (s *Store) Log(ctx context.Context, channel string, limit int) ([]Attempt, error) {
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
