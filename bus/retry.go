package bus

import (
	"context"
	"errors"
	"time"

	"github.com/meshmon/meshmon/internal/backoff"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A JetStream API request in a cluster can go unanswered, or answered with
// "no responders", while the stream or the meta group moves its leader or a
// peer restarts: the request is dropped, not queued, and the client waits
// out its whole deadline for nothing. Reads that a command makes once
// (status, the end of a replay) go through Retry instead.

// Attempts of retry wait at least retryAttemptFirst for an answer, twice as
// long each time after, at most retryAttemptMax; between attempts retry
// pauses retryPause.
const (
	retryAttemptFirst = time.Second
	retryAttemptMax   = 5 * time.Second
	retryPause        = 100 * time.Millisecond
)

// Retry runs f, each attempt with a deadline of its own within ctx, until f
// succeeds, fails with an error that is not transient, or ctx is done; it
// returns f's last error.
func Retry(ctx context.Context, f func(context.Context) error) error {
	wait := retryAttemptFirst
	for {
		actx, cancel := context.WithTimeout(ctx, wait)
		err := f(actx)
		cancel()
		if err == nil || ctx.Err() != nil || !transient(err) {
			return err
		}
		wait = min(2*wait, retryAttemptMax)
		if !backoff.Sleep(ctx, retryPause) {
			return err
		}
	}
}

// Retried is Retry for a read: it returns the value of f's last attempt.
func Retried[T any](ctx context.Context, f func(context.Context) (T, error)) (T, error) {
	var v T
	err := Retry(ctx, func(ctx context.Context) (err error) {
		v, err = f(ctx)
		return err
	})
	return v, err
}

// noRespondersTries bounds the tries of a request that has no responders
// where a caller does not go through Retry.
const noRespondersTries = 20

// unheard runs f until it returns other than "no responders", at most
// noRespondersTries times, retryPause apart, within ctx: a request no one
// heard was not acted on, so it may be sent again. Right after a push of
// an account's JWT, central applies it, then again edited
// (peer/centralclaims.go), and the account's JetStream may hear nothing
// for a moment in between (TestChanges failed so once in 40 runs, adding a
// site right after the last change).
func unheard[T any](ctx context.Context, f func() (T, error)) (T, error) {
	for try := 1; ; try++ {
		v, err := f()
		if !errors.Is(err, nats.ErrNoResponders) || try == noRespondersTries || !backoff.Sleep(ctx, retryPause) {
			return v, err
		}
	}
}

// unheardErr is unheard for a request that returns an error alone.
func unheardErr(ctx context.Context, f func() error) error {
	_, err := unheard(ctx, func() (struct{}, error) { return struct{}{}, f() })
	return err
}

// transient reports whether err is one that a JetStream API request may
// get while a leader moves or a peer restarts, and not again later: no
// answer in time, no responders, or JetStream (or its cluster) being
// unavailable for a moment.
func transient(err error) bool {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout),
		errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrJetStreamNotEnabled):
		return true
	case errors.As(err, &apiErr):
		return apiErr.Code == 503 // JetStream or its cluster temporarily unavailable
	}
	return false
}
