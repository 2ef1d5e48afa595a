package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TailOptions selects what Tail delivers.
type TailOptions struct {
	// Subject filters the messages; empty means every subject of the
	// stream. EventFilter builds one.
	Subject string
	// Since starts the replay at the first message stored at or after it.
	Since time.Time
	// StartSeq starts the replay at this stream sequence; it wins over
	// Since. With neither, only messages published from now on are
	// delivered.
	StartSeq uint64
	// Live keeps delivering new messages after the replay. Without it Tail
	// returns once it has delivered every message up to the stream's last
	// sequence at the start.
	Live bool
	// Stream is the stream to read; empty means the one that holds
	// Subject, or EventsStream.
	Stream string
}

// TailMsg is one message delivered by Tail.
type TailMsg struct {
	Subject string
	Seq     uint64 // stream sequence
	Time    time.Time
	Data    []byte
	Header  nats.Header
}

// Tail delivers stored and new messages to fn, in stream order, using an
// ordered consumer (no server-side state is left behind). It returns nil
// when ctx is done or, with Live false, when the replay is complete, and
// fn's error if fn fails.
func Tail(ctx context.Context, js jetstream.JetStream, opts TailOptions, fn func(TailMsg) error) error {
	stream := opts.Stream
	if stream == "" {
		stream = StreamForSubject(opts.Subject)
	}
	if stream == "" {
		stream = EventsStream
	}
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy}
	if opts.Subject != "" {
		cfg.FilterSubjects = []string{opts.Subject}
	}
	switch {
	case opts.StartSeq > 0:
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = opts.StartSeq
	case !opts.Since.IsZero():
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		since := opts.Since
		cfg.OptStartTime = &since
	}

	var lastSeq uint64
	if !opts.Live {
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return fmt.Errorf("tail %s: %w", stream, err)
		}
		lastSeq = s.CachedInfo().State.LastSeq
		if cfg.DeliverPolicy == jetstream.DeliverNewPolicy || lastSeq == 0 || opts.StartSeq > lastSeq {
			return nil
		}
	}

	if owner := consumerOwner(js); owner != "" {
		return tailOwned(ctx, js, stream, owner, cfg, opts.Live, lastSeq, fn)
	}
	cons, err := js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return fmt.Errorf("tail %s: %w", stream, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("tail %s: %w", stream, err)
	}
	defer it.Stop()

	if !opts.Live {
		info, err := cons.Info(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("tail %s: %w", stream, err)
		}
		if info.NumPending == 0 && info.Delivered.Consumer == 0 {
			return nil // nothing matches
		}
	}

	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			return fmt.Errorf("tail %s: %w", stream, err)
		}
		meta, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("tail %s: %w", stream, err)
		}
		if err := fn(TailMsg{
			Subject: m.Subject(),
			Seq:     meta.Sequence.Stream,
			Time:    meta.Timestamp,
			Data:    m.Data(),
			Header:  m.Headers(),
		}); err != nil {
			return err
		}
		if !opts.Live && (meta.Sequence.Stream >= lastSeq || meta.NumPending == 0) {
			return nil
		}
	}
}

// tailOwned is Tail for a tenant user, whose consumers may have its own
// names only (an ordered consumer takes a new name each time it starts
// again): one consumer of its names, without acks, made again after the
// last message delivered when a message goes missing or the consumer
// fails, and removed at the end.
func tailOwned(ctx context.Context, js jetstream.JetStream, stream, owner string, ocfg jetstream.OrderedConsumerConfig,
	live bool, lastSeq uint64, fn func(TailMsg) error) error {
	cfg := jetstream.ConsumerConfig{
		DeliverPolicy:     ocfg.DeliverPolicy,
		OptStartSeq:       ocfg.OptStartSeq,
		OptStartTime:      ocfg.OptStartTime,
		FilterSubjects:    ocfg.FilterSubjects,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: 30 * time.Second,
		MemoryStorage:     true,
		Replicas:          1,
	}
	first := true
	for {
		done, delivered, err := tailOnce(ctx, js, stream, owner, cfg, first, live, lastSeq, fn)
		if done || ctx.Err() != nil {
			return err
		}
		first = false
		if delivered > 0 {
			cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = jetstream.DeliverByStartSequencePolicy, delivered+1, nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// tailOnce runs one consumer of tailOwned. It reports whether the tail is
// over (with its error), and the stream sequence of the last message it
// delivered.
func tailOnce(ctx context.Context, js jetstream.JetStream, stream, owner string, cfg jetstream.ConsumerConfig,
	first, live bool, lastSeq uint64, fn func(TailMsg) error) (bool, uint64, error) {
	cons, err := createOwned(ctx, js, stream, owner, cfg)
	if err != nil {
		if ctx.Err() != nil {
			return true, 0, nil
		}
		return true, 0, fmt.Errorf("tail %s: %w", stream, err)
	}
	defer deleteOwned(ctx, js, stream, cons)
	if first && !live {
		if info := cons.CachedInfo(); info.NumPending == 0 && info.Delivered.Consumer == 0 {
			return true, 0, nil // nothing matches
		}
	}
	it, err := cons.Messages()
	if err != nil {
		return false, 0, nil
	}
	defer it.Stop()
	var delivered, want uint64 = 0, 1
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return true, delivered, nil
			}
			return false, delivered, nil // made again
		}
		meta, err := m.Metadata()
		if err != nil || meta.Sequence.Consumer != want {
			return false, delivered, nil // a gap: made again after delivered
		}
		want++
		if err := fn(TailMsg{Subject: m.Subject(), Seq: meta.Sequence.Stream, Time: meta.Timestamp, Data: m.Data(), Header: m.Headers()}); err != nil {
			return true, delivered, err
		}
		delivered = meta.Sequence.Stream
		if !live && (meta.Sequence.Stream >= lastSeq || meta.NumPending == 0) {
			return true, delivered, nil
		}
	}
}
