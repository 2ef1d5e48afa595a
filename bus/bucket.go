package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/meshmon/meshmon/internal/backoff"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// bucketEntry is one live key of a bucket, as readBucket returns it.
type bucketEntry struct {
	key      string
	value    []byte
	revision uint64
	gone     bool // deleted while read
}

// readBucketLinger is how long the consumer of readBucket outlives its
// last fetch before the server removes it, when readBucket could not
// remove it itself.
const readBucketLinger = 5 * time.Second

// readBucket reads every live key of a bucket with its latest value, in
// stream order. It reads through an ephemeral consumer (a key watcher's
// Stop waits seconds for a deletion a user may be refused) and asks for
// its removal when done, waiting a bounded time (dropConsumer): a command run
// every second (status) must not leave one behind each time. A tenant
// user's consumer has one of its own few names (createOwned), and is
// deleted before readBucket returns.
func readBucket(ctx context.Context, js jetstream.JetStream, bucket string) ([]bucketEntry, error) {
	prefix := "$KV." + bucket + "."
	stream := "KV_" + bucket
	owner := consumerOwner(js)
	drop := func(c jetstream.Consumer) {
		if owner != "" {
			// One of the user's few names: give it back before returning.
			deleteOwned(ctx, js, stream, c)
		} else {
			_ = dropConsumer(ctx, js, stream, c.CachedInfo().Name)
		}
	}
	// nats-server places the consumer on any replica of the bucket,
	// one still catching up included (a peer's own just after its
	// restart), which then reads short. The consumer is taken only if what
	// it counts to deliver, one message per key, covers the keys the
	// stream's leader counted just before; otherwise another is made,
	// placed anew. (A central peer's start that read the sites short
	// dropped their sources: TestCentralPeerRestartKeepsSources.)
	var c jetstream.Consumer
	short := backoff.New(50*time.Millisecond, 500*time.Millisecond)
	for try := 1; ; try++ {
		keys, counted := leaderKeys(ctx, js, stream, "")
		var err error
		c, err = createReader(ctx, js, stream, owner, jetstream.ConsumerConfig{
			DeliverPolicy:     jetstream.DeliverLastPerSubjectPolicy,
			FilterSubject:     prefix + ">",
			AckPolicy:         jetstream.AckNonePolicy,
			InactiveThreshold: readBucketLinger,
			MemoryStorage:     true,
			Replicas:          1,
		})
		if err != nil {
			return nil, err
		}
		pending := c.CachedInfo().NumPending
		if !counted || pending >= keys {
			break
		}
		drop(c)
		if try == shortReaderTries || !short.Wait(ctx) {
			return nil, fmt.Errorf("read bucket %s: %d tries placed its reader on a replica short of the leader's keys (%d of %d): %w",
				bucket, try, pending, keys, ErrReplicaBehind)
		}
	}
	defer drop(c)
	r := bucketReader{prefix: prefix, at: map[string]int{}}
	left := c.CachedInfo().NumPending
	retry := backoff.New(10*time.Millisecond, 250*time.Millisecond)
	for left > 0 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		// All of it is stored already: take what is there, without
		// waiting for what may have gone since (a poller's key whose
		// TTL ran out).
		batch, err := c.FetchNoWait(int(min(left, 1000)))
		if err != nil {
			return nil, err
		}
		got := 0
		for m := range batch.Messages() {
			got++
			if left, err = r.take(m); err != nil {
				return nil, err
			}
		}
		err = batch.Error()
		if got == 0 && errors.Is(err, nats.ErrNoResponders) {
			// The server answers 503 to a pull request that no consumer
			// takes yet: one just created on a clustered stream whose
			// leader does not listen yet (5 of 80 fetches right after a
			// three-peer central started). Ask again.
			if !retry.Wait(ctx) {
				return nil, fmt.Errorf("%w (%w)", ctx.Err(), err)
			}
			continue
		}
		if err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, err
		}
		if got == 0 {
			break // the rest went while we read
		}
	}
	return r.live(), nil
}

// shortReaderTries bounds the consumers readBucket makes while each is
// placed on a replica that reads short (about 5 s of tries).
const shortReaderTries = 12

// leaderKeys is how many keys (subjects with a message) the stream's
// leader counts, of those filter matches when it is set; counted is false
// when its info could not be had within leaderInfoWait (a user not allowed
// it, or a stream without a leader for the moment, reads without the
// check).
func leaderKeys(ctx context.Context, js jetstream.JetStream, stream, filter string) (keys uint64, counted bool) {
	ctx, cancel := context.WithTimeout(ctx, leaderInfoWait)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, false
	}
	if filter == "" {
		return s.CachedInfo().State.NumSubjects, true
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return 0, false
	}
	return uint64(len(info.State.Subjects)), true
}

// leaderInfoWait bounds the wait for a stream's info from its leader: a
// request sent while the stream has no leader goes unanswered, and a
// read or a watch goes on without the check rather than wait with it.
const leaderInfoWait = 2 * time.Second

// createReader creates readBucket's consumer: one of the user's own names
// when owner is set. No responders means the API is not there for a moment
// (a leader moves, JetStream starts); it answers at once, so a few quick
// tries cost little.
func createReader(ctx context.Context, js jetstream.JetStream, stream, owner string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	return unheard(ctx, func() (jetstream.Consumer, error) {
		if owner != "" {
			return createOwned(ctx, js, stream, owner, cfg)
		}
		return js.CreateConsumer(ctx, stream, cfg)
	})
}

// bucketReader gathers a bucket's latest values from the messages of a
// last-per-subject consumer, keeping a key changed or deleted while read
// at its first place.
type bucketReader struct {
	prefix string
	out    []bucketEntry
	at     map[string]int // key -> index in out
}

// take adds one message and returns how many the consumer has left.
func (r *bucketReader) take(m jetstream.Msg) (uint64, error) {
	md, err := m.Metadata()
	if err != nil {
		return 0, err
	}
	e := bucketEntry{key: strings.TrimPrefix(m.Subject(), r.prefix), value: m.Data(), revision: md.Sequence.Stream}
	i, seen := r.at[e.key]
	switch {
	case deleted(m.Headers()) && seen:
		r.out[i].gone = true
	case deleted(m.Headers()):
	case seen:
		r.out[i] = e
	default:
		r.at[e.key] = len(r.out)
		r.out = append(r.out, e)
	}
	return md.NumPending, nil
}

// live is what was read, without the keys deleted while read.
func (r *bucketReader) live() []bucketEntry {
	live := r.out[:0]
	for _, e := range r.out {
		if !e.gone {
			live = append(live, e)
		}
	}
	return live
}

// deleted reports whether a bucket message with headers h marks its key
// deleted or purged, by the KV API or by the server (a marker left when a
// key's TTL ran out).
func deleted(h nats.Header) bool {
	switch h.Get("KV-Operation") {
	case "DEL", "PURGE":
		return true
	}
	return h.Get(jetstream.MarkerReasonHeader) != ""
}
