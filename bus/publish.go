package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/meshmon/meshmon"
)

// How PublishBatch publishes, and why.
//
// With SyncAlways every stored message costs an fsync, so pipelining
// ordinary publishes (PublishMsgAsync) is bound by the disk: about 3k
// msg/s for 512 B messages here, batch size regardless. An atomic batch
// (Nats-Batch-Id/-Sequence/-Commit, nats-server 2.12+) is stored and
// synced as one unit: about 17k msg/s in batches of 100, 40-59k in batches
// of 1000 (the benchmarks in publish_test.go list the numbers).
// Atomic batches keep order and honour Nats-Msg-Id, but a batch that
// contains an id the stream already holds is refused whole (API error
// 10201), and that is exactly the case dedup exists for: a retry after a
// lost ack, two pollers reporting the same observation.
//
// An atomic batch has a fixed cost, though: on a stream of one replica
// nats-server stages each batch in a file store of its own, created on disk
// and deleted at the commit. A busy poller's spool sends runs of a few
// messages (the next run is what its polls committed during the last
// one's round trip), and there an atomic batch cost 2 to 4 times the CPU
// of the same run published message by message: 768 µs against 193 µs a
// message in runs of 2, break-even at 12, 131 against 176 µs in runs of
// 16 (BenchmarkPublishSmallRuns, CPU of the process with the server in
// it). At 30,000 devices the site peer spent a third of its CPU creating
// and deleting those stores (issue 23).
//
// So PublishBatch sends each run of consecutive messages for the same
// stream of at least MinAtomic and at most MaxAtomic messages as one
// atomic batch, a shorter run message by message, and when the server
// refuses a batch with an API error (a duplicate id, a message too large,
// atomic publish disabled, ...) it publishes that run again message by
// message, pipelined, which stores what is new, acks what is duplicate and
// pins down the index of a message that is refused for good.
//
// Duplicates come in spells: a poller group's take-over checks the devices
// the member that left had already polled in this slot last, and each of
// their samples has the id of that member's (issue 23); a retry after a
// lost ack sends a tail the stream holds. A refused batch is not cheap
// either: the server stages the whole batch before it finds the duplicate
// at the commit, and at 30,000 devices a refusal took 0.1 to 0.9 s. So
// while the last run sent held a duplicate (refused for one, or acked as
// one message by message), the next goes message by message at once,
// where a duplicate costs the server no write; the first run without one
// brings the atomic batches back.

// Default publisher settings.
const (
	// DefaultMaxAtomic is the largest atomic batch PublishBatch sends;
	// nats-server refuses more than 1000 by default.
	DefaultMaxAtomic = 1000
	// DefaultMinAtomic is the shortest run PublishBatch sends as an
	// atomic batch; shorter runs cost less published message by message.
	DefaultMinAtomic = 12
	// DefaultMaxInFlight is how many pipelined publishes may await their
	// ack at a time on the fallback path.
	DefaultMaxInFlight = 1024
	// DefaultAckWait bounds the wait for one atomic batch's commit ack, or
	// for the acks of one pipelined run.
	DefaultAckWait = 10 * time.Second
)

// Atomic batch headers of nats-server 2.12+.
const (
	hdrBatchID     = "Nats-Batch-Id"
	hdrBatchSeq    = "Nats-Batch-Sequence"
	hdrBatchCommit = "Nats-Batch-Commit"
)

// API error codes PublishBatch acts on.
const (
	codeStorageFull     = 10047 // the peer's disk (or its account's storage) is full
	codeMsgTooLarge     = 10054
	codeHeaderTooLarge  = 10097
	codeStreamSealed    = 10109
	codeTTLInvalid      = 10165
	codeTTLDisabled     = 10166
	codeAtomicDisabled  = 10174
	codeAtomicDuplicate = 10201
)

// Publisher publishes batches of meshmon messages with at-least-once
// delivery and server-side dedup by message id. It is safe for concurrent
// use; batches published concurrently are not ordered with respect to each
// other.
type Publisher struct {
	js jetstream.JetStream

	// MaxAtomic is the largest atomic batch; 1 or less turns atomic
	// batches off. Set it before first use.
	MaxAtomic int
	// MinAtomic is the shortest run sent as an atomic batch; a shorter
	// one is published message by message. Less than 2 means 2. Set it
	// before first use.
	MinAtomic int
	// MaxInFlight bounds the pipelined publishes awaiting their ack. Set it
	// before first use.
	MaxInFlight int
	// AckWait bounds each wait for acks. Set it before first use.
	AckWait time.Duration

	// noAtomic is set once a stream said atomic publish is disabled.
	noAtomic atomic.Bool
	// dups is set while the last run published held a duplicate id.
	dups atomic.Bool
}

// NewPublisher returns a Publisher on js. js's own bound on pending async
// publishes (jetstream.WithPublishAsyncMaxPending, 4000 by default) also
// applies.
func NewPublisher(js jetstream.JetStream) *Publisher {
	return &Publisher{js: js, MaxAtomic: DefaultMaxAtomic, MinAtomic: DefaultMinAtomic, MaxInFlight: DefaultMaxInFlight, AckWait: DefaultAckWait}
}

// PublishBatch publishes msgs in order, each with the Nats-Msg-Id header
// set to its ID, and returns how many of the leading messages the server
// confirmed as stored (an ack for a duplicate counts: the stream already
// holds it). The caller retries msgs[acked:] later, or, when err wraps
// meshmon.ErrRejected, drops msgs[acked] (the server or the subject scheme refuses
// it for good: too large, no stream for the subject, no id) and retries
// the rest. Messages after msgs[acked] may have been stored too; their ids
// make the retry harmless. While the connection is down it fails at once
// with an error wrapping ErrNotConnected, and when the connection drops
// while it waits for acks it stops waiting and fails so too. When the
// peer's disk is full the error wraps meshmon.ErrPeerDiskFull.
func (p *Publisher) PublishBatch(ctx context.Context, msgs []meshmon.Message) (acked int, err error) {
	if nc := p.js.Conn(); !nc.IsConnected() {
		// Before the first connect nats.go knows nothing of the server and
		// would blame headers ("not supported by this server").
		return 0, fmt.Errorf("publish: %w (%s)", ErrNotConnected, strings.ToLower(nc.Status().String()))
	}
	// A batch in flight when the connection drops is not waited out: its
	// acks are gone with the connection, so the wait ends at once and the
	// caller retries when the connection is back (WaitConnected).
	ctx, stop := p.untilDisconnect(ctx)
	defer stop()
	defer func() {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == codeStorageFull && !errors.Is(err, meshmon.ErrPeerDiskFull) {
			err = fmt.Errorf("%w: %w", meshmon.ErrPeerDiskFull, err)
		}
		if err != nil && !errors.Is(err, ErrNotConnected) && (errors.Is(context.Cause(ctx), ErrNotConnected) ||
			errors.Is(err, nats.ErrDisconnected) || errors.Is(err, nats.ErrConnectionReconnecting) || errors.Is(err, nats.ErrConnectionClosed)) {
			err = fmt.Errorf("%w: %w", ErrNotConnected, err)
		}
	}()
	maxPayload := int(p.js.Conn().MaxPayload())
	for acked < len(msgs) {
		if err := checkMessage(msgs[acked]); err != nil {
			return acked, rejected(acked, msgs[acked], err)
		}
		// The run: consecutive well-formed messages for the same stream.
		stream := StreamOf(msgs[acked].Stream)
		end := acked + 1
		if fits(msgs[acked], maxPayload) {
			for end < len(msgs) && end-acked < p.maxAtomic() && fits(msgs[end], maxPayload) &&
				msgs[end].Stream == msgs[acked].Stream && checkMessage(msgs[end]) == nil {
				end++
			}
		}
		run := msgs[acked:end]
		atomicRun := len(run) >= max(p.MinAtomic, 2) && !p.noAtomic.Load()
		if atomicRun && p.dups.Load() {
			// In a spell of duplicates: the run's head, one by one, tells
			// whether it goes on.
			head := max(p.MinAtomic, 2)
			n, dups, err := p.publishPipelined(ctx, run[:head], acked)
			acked += n
			if err != nil {
				return acked, err
			}
			if dups == 0 {
				// Over: the rest is a run of its own, atomic if long
				// enough.
				p.dups.Store(false)
				continue
			}
			run = run[head:]
		} else if atomicRun {
			err := p.publishAtomic(ctx, run)
			if err == nil {
				acked = end
				continue
			}
			var apiErr *jetstream.APIError
			if !errors.As(err, &apiErr) {
				return acked, fmt.Errorf("publish messages %d to %d (%s): %w", acked, end-1, stream, err)
			}
			switch apiErr.ErrorCode {
			case codeStorageFull:
				// Nothing of the batch is stored; one by one would be
				// refused alike.
				return acked, fmt.Errorf("publish messages %d to %d (%s): %w", acked, end-1, stream, err)
			case codeAtomicDisabled:
				p.noAtomic.Store(true)
			case codeAtomicDuplicate:
				p.dups.Store(true)
			}
			// Fall through: the run again, one message at a time.
		}
		n, dups, err := p.publishPipelined(ctx, run, acked)
		acked += n
		if dups > 0 {
			p.dups.Store(true)
		} else if n >= max(p.MinAtomic, 2) {
			// As many as the head above without a duplicate: over.
			p.dups.Store(false)
		}
		if err != nil {
			return acked, err
		}
	}
	return acked, nil
}

// untilDisconnect returns ctx cancelled, with ErrNotConnected as its
// cause, when the connection leaves the connected state. stop releases the
// watch and waits for it.
func (p *Publisher) untilDisconnect(ctx context.Context) (context.Context, func()) {
	nc := p.js.Conn()
	ctx, cancel := context.WithCancelCause(ctx)
	ch := nc.StatusChanged(nats.DISCONNECTED, nats.RECONNECTING, nats.CLOSED)
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case _, ok := <-ch:
			if ok {
				cancel(ErrNotConnected)
			}
		case <-ctx.Done():
		}
	}()
	// A drop between the caller's check and the listener is caught here.
	if !nc.IsConnected() {
		cancel(ErrNotConnected)
	}
	return ctx, func() {
		cancel(context.Canceled)
		nc.RemoveStatusListener(ch)
		<-done
	}
}

// Probe asks the peer whether its JetStream answers. It returns nil when it
// does, an error wrapping meshmon.ErrPeerDiskFull when the peer refuses
// writes for a full disk, and another error when it does not answer.
func (p *Publisher) Probe(ctx context.Context) error {
	_, err := p.js.AccountInfo(ctx)
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == codeStorageFull {
		return fmt.Errorf("%w: %w", meshmon.ErrPeerDiskFull, err)
	}
	return err
}

// Connected reports whether the connection to the peer is up now.
func (p *Publisher) Connected() bool { return p.js.Conn().IsConnected() }

// WaitConnected returns nil once the connection to the peer is up, at once
// if it is up now, or ctx's error when ctx is done first. A caller whose
// publish failed with ErrNotConnected retries after it, as soon as the
// connection is back.
func (p *Publisher) WaitConnected(ctx context.Context) error {
	nc := p.js.Conn()
	ch := nc.StatusChanged(nats.CONNECTED)
	defer nc.RemoveStatusListener(ch)
	if nc.IsConnected() {
		return nil
	}
	for {
		select {
		case <-ch:
			if nc.IsConnected() {
				return nil
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (p *Publisher) maxAtomic() int {
	if p.MaxAtomic < 1 {
		return 1
	}
	return p.MaxAtomic
}

func (p *Publisher) ackWait() time.Duration {
	if p.AckWait <= 0 {
		return DefaultAckWait
	}
	return p.AckWait
}

// fits reports whether m is small enough to go in an atomic batch; a
// message that is not is published alone, where its refusal is pinned to
// it.
func fits(m meshmon.Message, maxPayload int) bool {
	return len(m.Data)+len("ev...")+len(m.Site)+len(m.Device)+len(m.Kind)+len(m.ID)+256 < maxPayload
}

// batchAck is the server's answer to an atomic batch's commit.
type batchAck struct {
	Error *jetstream.APIError `json:"error,omitempty"`
	Batch string              `json:"batch"`
	Count int                 `json:"count"`
}

// publishAtomic publishes run (2 to 1000 messages of one stream) as one
// atomic batch and waits for its commit ack: all are stored or none.
func (p *Publisher) publishAtomic(ctx context.Context, run []meshmon.Message) error {
	nc := p.js.Conn()
	id := nuid.Next()
	last := len(run) - 1
	for i, m := range run[:last] {
		h := nats.Header{
			jetstream.MsgIDHeader: []string{m.ID},
			hdrBatchID:            []string{id},
			hdrBatchSeq:           []string{strconv.Itoa(i + 1)},
		}
		if err := nc.PublishMsg(&nats.Msg{Subject: m.Subject(), Data: m.Data, Header: h}); err != nil {
			return err
		}
	}
	m := run[last]
	h := nats.Header{
		jetstream.MsgIDHeader: []string{m.ID},
		hdrBatchID:            []string{id},
		hdrBatchSeq:           []string{strconv.Itoa(last + 1)},
		hdrBatchCommit:        []string{"1"},
	}
	ctx, cancel := context.WithTimeout(ctx, p.ackWait())
	defer cancel()
	resp, err := nc.RequestMsgWithContext(ctx, &nats.Msg{Subject: m.Subject(), Data: m.Data, Header: h})
	if err != nil {
		return err
	}
	var ack batchAck
	if err := json.Unmarshal(resp.Data, &ack); err != nil {
		return fmt.Errorf("decode batch ack: %w", err)
	}
	if ack.Error != nil {
		return ack.Error
	}
	if ack.Count != len(run) {
		return fmt.Errorf("batch ack counts %d messages, want %d", ack.Count, len(run))
	}
	return nil
}

// publishPipelined publishes run message by message without waiting for
// each ack (at most MaxInFlight outstanding), then waits for the acks in
// order. It returns how many leading messages are stored, and how many of
// those the stream held already; base is the index of run[0] in the
// caller's batch, for errors.
func (p *Publisher) publishPipelined(ctx context.Context, run []meshmon.Message, base int) (acked, dups int, err error) {
	window := p.MaxInFlight
	if window <= 0 {
		window = DefaultMaxInFlight
	}
	ctx, cancel := context.WithTimeout(ctx, p.ackWait())
	defer cancel()

	futs := make([]jetstream.PubAckFuture, 0, len(run))
	// sendErr is why the message after the last future was not sent.
	var sendErr error
	// next waits for the ack of the oldest message awaiting one.
	next := func() error {
		dup, err := await(ctx, futs[acked], base+acked, run[acked])
		if err != nil {
			return err
		}
		if dup {
			dups++
		}
		acked++
		return nil
	}
	for i, m := range run {
		if i-acked >= window {
			if err := next(); err != nil {
				return acked, dups, err
			}
		}
		nm := &nats.Msg{Subject: m.Subject(), Data: m.Data, Header: nats.Header{jetstream.MsgIDHeader: []string{m.ID}}}
		f, err := p.js.PublishMsgAsync(nm)
		if err != nil {
			if permanent(err) {
				sendErr = rejected(base+i, m, err)
			} else {
				sendErr = fmt.Errorf("publish message %d (%s): %w", base+i, nm.Subject, err)
			}
			break
		}
		futs = append(futs, f)
	}
	for acked < len(futs) {
		if err := next(); err != nil {
			return acked, dups, err
		}
	}
	return acked, dups, sendErr
}

// await waits for the ack of message i, and reports whether the stream
// held it already.
func await(ctx context.Context, f jetstream.PubAckFuture, i int, m meshmon.Message) (dup bool, err error) {
	select {
	case ack := <-f.Ok():
		return ack.Duplicate, nil
	case err := <-f.Err():
		if permanent(err) {
			return false, rejected(i, m, err)
		}
		return false, fmt.Errorf("publish message %d (%s): %w", i, m.Subject(), err)
	case <-ctx.Done():
		return false, fmt.Errorf("publish message %d (%s): %w", i, m.Subject(), ctx.Err())
	}
}

func rejected(i int, m meshmon.Message, err error) error {
	return fmt.Errorf("%w: message %d (%s): %w", meshmon.ErrRejected, i, m.Subject(), err)
}

// checkMessage refuses what no server would store: no id, or no meshmon
// stream.
func checkMessage(m meshmon.Message) error {
	if m.ID == "" {
		return errors.New("message has no id")
	}
	if StreamOf(m.Stream) == "" {
		return fmt.Errorf("message has no stream (%s); want events or metrics", m.Stream)
	}
	return nil
}

// permanent reports whether a publish error means the server will never
// store the message, so retrying is pointless.
func permanent(err error) bool {
	if errors.Is(err, nats.ErrMaxPayload) || errors.Is(err, nats.ErrBadSubject) {
		return true
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case codeMsgTooLarge, codeHeaderTooLarge, codeStreamSealed, codeTTLInvalid, codeTTLDisabled:
			return true
		}
	}
	return false
}
