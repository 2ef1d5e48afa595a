package bus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Elector is one candidate for a lease on one key of a KV bucket, as etcd's
// concurrency.Election is for a prefix: Campaign takes the key when it is
// free (create-if-absent, with a per-key TTL so that the lease lapses when
// its holder dies), Renew extends it (a publish that expects the last
// revision, with the TTL again: KeyValue.Update would drop it), Resign
// gives it up, and Observe watches the key. It is mechanism only: when to
// stand, renew or step down is its caller's policy (see Group.lead). One
// goroutine uses it.
type Elector struct {
	js      jetstream.JetStream
	kv      jetstream.KeyValue
	key     string // in the bucket
	subject string // the key's subject
	ttl     time.Duration

	value     []byte    // what this candidate wrote at its last win
	rev       uint64    // the revision of the lease it holds; 0 when none
	renewedAt time.Time // when the win or the last renewal was sent
}

// NewElector returns a candidate for the lease at key in the bucket kv
// (named bucket, reached through js), held for ttl (whole seconds, as
// per-key TTLs are) after each win or renewal.
func NewElector(js jetstream.JetStream, kv jetstream.KeyValue, bucket, key string, ttl time.Duration) *Elector {
	return &Elector{js: js, kv: kv, key: key, subject: KVSubject(bucket, key), ttl: ttl}
}

// Campaign tries once to take the lease with value (which names the
// candidate) and reports whether it did; an error is either a lease held
// by another (jetstream.ErrKeyExists) or a peer that did not answer.
func (e *Elector) Campaign(ctx context.Context, value []byte) (bool, error) {
	sent := time.Now()
	rev, err := e.kv.Create(ctx, e.key, value, jetstream.KeyTTL(e.ttl))
	if err != nil {
		return false, err
	}
	e.value, e.rev, e.renewedAt = bytes.Clone(value), rev, sent
	return true, nil
}

// Supplant takes the lease from a holder its caller judged dead (by the
// holder's heartbeats, long before its lease lapses): a publish of value
// that expects rev, the lease's revision as the caller last saw it, so
// that it fails when the holder renewed since or another candidate
// supplanted it first. The former holder's next renewal fails with
// ErrLeaseLost; until then it stops acting on its own once three quarters
// of its lease have passed (see Group.lead), and whatever it writes by
// revision meanwhile fails.
func (e *Elector) Supplant(ctx context.Context, value []byte, rev uint64) (bool, error) {
	sent := time.Now()
	ack, err := e.js.Publish(ctx, e.subject, value, jetstream.WithExpectLastSequencePerSubject(rev), jetstream.WithMsgTTL(e.ttl))
	if err != nil {
		return false, err
	}
	e.value, e.rev, e.renewedAt = bytes.Clone(value), ack.Sequence, sent
	return true, nil
}

// Renew extends the lease this candidate holds. It wraps ErrLeaseLost when
// the key changed hands; any other error (a timeout) leaves the lease as
// it was, to be renewed again before it lapses. A key that moved on but
// holds this candidate's value (an earlier renewal whose answer was lost)
// is still its lease: it renews from there.
func (e *Elector) Renew(ctx context.Context) error {
	if e.rev == 0 {
		return fmt.Errorf("renew: %w: not held", ErrLeaseLost)
	}
	sent := time.Now()
	ack, err := e.js.Publish(ctx, e.subject, e.value, jetstream.WithExpectLastSequencePerSubject(e.rev), jetstream.WithMsgTTL(e.ttl))
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence && e.adopt(ctx) {
		// A renewal the peer stored but whose answer was lost, and
		// the watch has not shown it yet: once more, from there.
		ack, err = e.js.Publish(ctx, e.subject, e.value, jetstream.WithExpectLastSequencePerSubject(e.rev), jetstream.WithMsgTTL(e.ttl))
	}
	if err != nil {
		if errors.As(err, &apiErr) {
			e.rev = 0
			return fmt.Errorf("%w: %s", ErrLeaseLost, apiErr.Description)
		}
		return err
	}
	e.rev, e.renewedAt = ack.Sequence, sent
	return nil
}

// adopt reads the key and takes its revision as the lease's when it holds
// what this candidate wrote; it reports whether it did.
func (e *Elector) adopt(ctx context.Context) bool {
	ent, err := e.kv.Get(ctx, e.key)
	return err == nil && e.Observed(ent)
}

// RenewedAt is when the win or the last renewal of the lease held was
// sent: the lease lasts its TTL from then at least.
func (e *Elector) RenewedAt() time.Time { return e.renewedAt }

// Resign gives the lease up, if the key still holds what this candidate
// wrote, so that another candidate takes over at once.
func (e *Elector) Resign(ctx context.Context) error {
	if e.value == nil {
		return nil
	}
	ent, err := e.kv.Get(ctx, e.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if !bytes.Equal(ent.Value(), e.value) {
		return nil // another's
	}
	e.rev = 0
	return e.kv.Delete(ctx, e.key, jetstream.LastRevision(ent.Revision()))
}

// Observe watches the key: each win, renewal, lapse or resignation.
func (e *Elector) Observe(ctx context.Context) (jetstream.KeyWatcher, error) {
	return e.kv.Watch(ctx, e.key)
}

// Observed tells the elector of an update that Observe delivered and
// reports whether the lease is this candidate's: it is when the key holds
// what the candidate wrote, at whatever revision (a renewal whose answer
// was lost shows up here first, and the next renewal expects it).
func (e *Elector) Observed(ent jetstream.KeyValueEntry) bool {
	op := ent.Operation()
	if op == jetstream.KeyValueDelete || op == jetstream.KeyValuePurge || e.value == nil || !bytes.Equal(ent.Value(), e.value) {
		return false
	}
	if ent.Revision() > e.rev {
		e.rev = ent.Revision()
	}
	return true
}
