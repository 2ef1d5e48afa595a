package bus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/meshmon/meshmon"
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
	// LastPerSubject replays the last message of each subject Subject
	// matches, in stream order (with Live, then every new one); it wins
	// over StartSeq and Since. When the replay has to make its consumer
	// again part way, it delivers every message after the last one
	// delivered, so a subject's message may come more than once: keep the
	// last.
	LastPerSubject bool
	// Live keeps delivering new messages after the replay. Without it Tail
	// returns once it has delivered every message on Subject that the
	// stream's leader held at the start, or fails.
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

// tailLinger is how long a tail's consumer outlives its last pull when
// the tail could not remove it (a killed client, a lost connection): a
// script that replays every second must not fill the stream's consumer
// limit.
const tailLinger = 5 * time.Second

// replayStall is how long a replay may wait for its next message before it
// fails: long enough for a consumer to be made again on another peer after
// a peer's restart or a leader move, which a replay rides out.
const replayStall = 30 * time.Second

// replayEnd is the last message a replay delivers: the last message on its
// subject that the stream's leader held when the replay started.
type replayEnd struct {
	stream string
	seq    uint64
	s      jetstream.Stream
}

// findEnd asks the stream's leader (stream info and message get are
// answered by the leader only; the streams allow no direct get) for the
// last message a replay of opts must deliver. A zero seq means the replay
// has nothing to deliver.
//
// The end is not what the tail's consumer reports: an ephemeral consumer of
// one replica may be placed on a peer that is still catching up (one just
// restarted), whose NumPending is 0 at the end of what it holds, not of
// what the stream holds.
func findEnd(ctx context.Context, js jetstream.JetStream, stream string, opts TailOptions) (replayEnd, error) {
	s, err := Retried(ctx, func(ctx context.Context) (jetstream.Stream, error) { return js.Stream(ctx, stream) })
	if err != nil {
		return replayEnd{}, fmt.Errorf("tail %s: stream info: %w", stream, err)
	}
	end := replayEnd{stream: stream, s: s}
	st := s.CachedInfo().State
	seq, at := st.LastSeq, st.LastTime
	if seq == 0 {
		return end, nil
	}
	if opts.Subject != "" {
		m, err := Retried(ctx, func(ctx context.Context) (*jetstream.RawStreamMsg, error) {
			return s.GetLastMsgForSubject(ctx, opts.Subject)
		})
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return end, nil
		}
		if err != nil {
			return replayEnd{}, fmt.Errorf("tail %s: last message on %s: %w", stream, opts.Subject, err)
		}
		seq, at = m.Sequence, m.Time
	}
	switch {
	case opts.LastPerSubject:
	case opts.StartSeq > 0 && opts.StartSeq > seq:
		return end, nil
	case opts.StartSeq == 0 && !opts.Since.IsZero() && at.Before(opts.Since):
		return end, nil
	}
	end.seq = seq
	return end, nil
}

// waited decides, after a replay has waited idle for its next message,
// whether it goes on waiting. It fails with an error wrapping
// ErrReplayIncomplete when the stream no longer holds the end (its limits
// or a purge removed it during the replay) or the replay has waited
// replayStall.
func (e replayEnd) waited(ctx context.Context, st tailState) error {
	err := Retry(ctx, func(ctx context.Context) error {
		_, err := e.s.GetMsg(ctx, e.seq)
		return err
	})
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("tail %s: %w: delivered up to sequence %d, and the stream no longer holds sequence %d, where the replay ends (removed while replaying)",
			e.stream, ErrReplayIncomplete, st.delivered, e.seq)
	}
	if idle := time.Since(st.idleSince); idle >= replayStall {
		why := ""
		if st.behind != "" {
			why = "; the last consumer made was behind the stream's leader: " + st.behind
		}
		return fmt.Errorf("tail %s: %w: delivered up to sequence %d of %d, then nothing for %s%s",
			e.stream, ErrReplayIncomplete, st.delivered, e.seq, idle.Round(time.Second), why)
	}
	return nil
}

// tailPull are the pulls of a tail: a consumer lost with its peer shows as
// missed heartbeats within seconds, and is made again.
var tailPull = []jetstream.PullMessagesOpt{jetstream.PullExpiry(5 * time.Second), jetstream.PullHeartbeat(time.Second)}

// replayPoll is how long a replay waits for its next message before it
// looks at why (replayEnd.waited).
const replayPoll = 2 * time.Second

// Tail delivers stored and new messages to fn, in stream order. It returns
// nil when ctx is done or, with Live false, once it has delivered the last
// message on opts.Subject that the stream's leader held at the start; a
// replay that cannot get there fails with an error wrapping
// ErrReplayIncomplete, never returns short. It returns fn's error if fn
// fails. It removes its consumer when it returns.
func Tail(ctx context.Context, js jetstream.JetStream, opts TailOptions, fn func(TailMsg) error) error {
	stream := opts.Stream
	if stream == "" {
		stream = StreamForSubject(opts.Subject)
	}
	if stream == "" {
		stream = EventsStream
	}
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy, InactiveThreshold: tailLinger}
	if opts.Subject != "" {
		cfg.FilterSubjects = []string{opts.Subject}
	}
	switch {
	case opts.LastPerSubject:
		cfg.DeliverPolicy = jetstream.DeliverLastPerSubjectPolicy
	case opts.StartSeq > 0:
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = opts.StartSeq
	case !opts.Since.IsZero():
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		since := opts.Since
		cfg.OptStartTime = &since
	}

	var end replayEnd
	if !opts.Live {
		if cfg.DeliverPolicy == jetstream.DeliverNewPolicy {
			return nil
		}
		var err error
		if end, err = findEnd(ctx, js, stream, opts); err != nil || end.seq == 0 {
			return err
		}
	}

	// A replay makes its consumers itself, to place them on a peer that
	// holds its end; so does a user whose consumers may have its own
	// names only.
	names := ownedNames(js)
	if len(names) > 0 || !opts.Live {
		return tailMade(ctx, js, stream, names, cfg, opts.Live, end, fn)
	}
	return tailOrdered(ctx, js, stream, cfg, fn)
}

// tailOrdered is a live Tail through an ordered consumer, which the client
// makes again under a new name after a gap or a lost peer.
func tailOrdered(ctx context.Context, js jetstream.JetStream, stream string, cfg jetstream.OrderedConsumerConfig, fn func(TailMsg) error) error {
	cons, err := js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return fmt.Errorf("tail %s: consumer: %w", stream, err)
	}
	// The consumer current at the end is removed here (the ones before, by
	// the client as it replaces them).
	defer func() {
		if info := cons.CachedInfo(); info != nil {
			_ = dropConsumer(ctx, js, stream, info.Name)
		}
	}()
	it, err := cons.Messages(tailPull...)
	if err != nil {
		return fmt.Errorf("tail %s: consumer: %w", stream, err)
	}
	defer it.Stop()
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
		if err := fn(TailMsg{Subject: m.Subject(), Seq: meta.Sequence.Stream, Time: meta.Timestamp, Data: m.Data(), Header: m.Headers()}); err != nil {
			return err
		}
	}
}

// nextMsg is it's next message; a replay (not live) gives up waiting after
// replayPoll with context.DeadlineExceeded, for the caller to look at why.
func nextMsg(ctx context.Context, it jetstream.MessagesContext, live bool) (jetstream.Msg, error) {
	if live {
		return it.Next(jetstream.NextContext(ctx))
	}
	wctx, cancel := context.WithTimeout(ctx, replayPoll)
	defer cancel()
	return it.Next(jetstream.NextContext(wctx))
}

// replayMove is how long a replay waits for its next message before it
// drops its consumer and makes another from the last message delivered:
// nats-server places each consumer anew, and a consumer stuck on one peer
// (one still catching up on the stream, which gets its messages only as
// fast as the catch-up stores them) gives way to one on a peer that holds
// them.
const replayMove = 4 * time.Second

// tailMade is Tail with consumers it makes itself, one after the other:
// for a replay, whose consumer must be on a peer that holds the stream up
// to the replay's end, and for a user whose consumers may have its own
// names only (names; an ordered consumer takes a new name each time it
// starts again). Each consumer, without acks, is made again after the last
// message delivered when a message goes missing, the consumer fails, or a
// replay's consumer stalls (replayMove); each is removed when done with.
func tailMade(ctx context.Context, js jetstream.JetStream, stream string, names []string, ocfg jetstream.OrderedConsumerConfig,
	live bool, end replayEnd, fn func(TailMsg) error) error {
	cfg := jetstream.ConsumerConfig{
		DeliverPolicy:     ocfg.DeliverPolicy,
		OptStartSeq:       ocfg.OptStartSeq,
		OptStartTime:      ocfg.OptStartTime,
		FilterSubjects:    ocfg.FilterSubjects,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: tailLinger,
		MemoryStorage:     true,
		Replicas:          1,
	}
	st := tailState{idleSince: time.Now()}
	for {
		done, err := tailOnce(ctx, js, stream, names, cfg, live, end, &st, fn)
		if done || ctx.Err() != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if st.delivered > 0 {
			cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = jetstream.DeliverByStartSequencePolicy, st.delivered+1, nil
		}
		if !live {
			if err := end.waited(ctx, st); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(tailAgain):
		}
	}
}

// tailAgain is the pause before a tail makes its consumer again.
const tailAgain = 250 * time.Millisecond

// tailState is where a tail stands, across its consumers.
type tailState struct {
	delivered uint64    // the stream sequence of the last message delivered
	idleSince time.Time // when it was (or when the tail started)
	behind    string    // why the last consumer refused was (replayEnd.behind)
}

// tailOnce runs one consumer of tailMade. It reports whether the tail is
// over (with its error).
func tailOnce(ctx context.Context, js jetstream.JetStream, stream string, names []string, cfg jetstream.ConsumerConfig,
	live bool, end replayEnd, st *tailState, fn func(TailMsg) error) (bool, error) {
	if len(names) == 0 {
		names = []string{nuid.Next()} // as an ordered consumer names itself
	}
	cons, err := createNamed(ctx, js, stream, names, cfg)
	if err != nil {
		if ctx.Err() != nil {
			return true, nil
		}
		return true, fmt.Errorf("tail %s: %w", stream, err)
	}
	defer func() { _ = dropConsumer(ctx, js, stream, cons.CachedInfo().Name) }()
	if !live {
		if st.behind = end.behind(ctx, cons.CachedInfo()); st.behind != "" {
			return false, nil // made again, and placed anew
		}
	}
	it, err := cons.Messages(append(tailPull, jetstream.WithMessagesErrOnMissingHeartbeat(true))...)
	if err != nil {
		return false, nil
	}
	defer it.Stop()
	var want uint64 = 1
	for {
		m, err := nextMsg(ctx, it, live)
		if err != nil {
			switch {
			case ctx.Err() != nil:
				return true, nil
			case errors.Is(err, context.DeadlineExceeded):
				if err := end.waited(ctx, *st); err != nil {
					return true, err
				}
				if time.Since(st.idleSince) >= replayMove {
					return false, nil // stalled: made again, and placed anew
				}
				continue
			}
			return false, nil // made again
		}
		meta, err := m.Metadata()
		if err != nil || meta.Sequence.Consumer != want {
			return false, nil // a gap: made again after delivered
		}
		want++
		st.idleSince = time.Now()
		if err := fn(TailMsg{Subject: m.Subject(), Seq: meta.Sequence.Stream, Time: meta.Timestamp, Data: m.Data(), Header: m.Headers()}); err != nil {
			return true, err
		}
		st.delivered = meta.Sequence.Stream
		if !live && st.delivered >= end.seq {
			return true, nil
		}
	}
}

// replayInfoWait bounds the stream info a replay asks for each consumer it
// makes: while the stream's leadership moves, the request goes unanswered
// until a new leader is elected.
const replayInfoWait = 2 * time.Second

// behind says why a replay's new consumer cannot deliver up to the
// replay's end at once, or returns "". nats-server places a consumer of
// one replica on any peer of its stream, one still catching up included
// (a peer just back, or one that took a lost peer's replica): such a
// consumer counts as pending only what its peer has stored so far, and
// gets the rest only as fast as the catch-up stores it (docs/mesh.md,
// Known limits). It is behind when it has nothing pending, though the
// replay's end is still to come, or when the stream's leader does not
// count its peer current.
func (e replayEnd) behind(ctx context.Context, ci *jetstream.ConsumerInfo) string {
	if ci.NumPending == 0 {
		return "nothing pending"
	}
	if ci.Cluster == nil || ci.Cluster.Leader == "" || e.s.CachedInfo().Config.Replicas < 2 {
		return "" // one copy of the stream: nowhere else to go
	}
	ictx, cancel := context.WithTimeout(ctx, replayInfoWait)
	defer cancel()
	info, err := e.s.Info(ictx)
	if err != nil || info.Cluster == nil {
		return "" // not known: the consumer's stall, if any, moves it
	}
	for _, r := range info.Cluster.Replicas {
		if r.Name == ci.Cluster.Leader && (!r.Current || r.Offline) {
			return fmt.Sprintf("on %s, which the stream's leader does not count current (lag %d)", r.Name, r.Lag)
		}
	}
	return ""
}

// WriteEvent writes the event m carries to w as 'meshmon events tail'
// prints it: one line, meshmon.FormatEvent's, or with asJSON the event as
// it is stored.
func WriteEvent(w io.Writer, m TailMsg, asJSON bool) error {
	var err error
	if asJSON {
		_, err = fmt.Fprintf(w, "%s\n", m.Data)
	} else {
		_, err = fmt.Fprintln(w, meshmon.FormatEvent(m.Subject, m.Data))
	}
	return err
}
