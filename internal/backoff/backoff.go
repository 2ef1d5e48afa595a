// Package backoff is meshmon's one retry policy: waits that start at a
// first duration, double after each failure up to a ceiling, and are each
// jittered by ±20% so that many clients retrying the same peer do not retry
// in step. A success resets the wait to the first duration.
//
// A Backoff is used by one goroutine; it is not safe for concurrent use.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is the state of one retry loop.
type Backoff struct {
	first, max time.Duration
	next       time.Duration // the next wait before jitter
}

// New returns a Backoff whose waits start at first and grow to at most max
// (both before jitter). A max below first is taken as first.
func New(first, max time.Duration) *Backoff {
	first = max1(first, time.Millisecond)
	return &Backoff{first: first, max: max1(max, first), next: first}
}

func max1(d, floor time.Duration) time.Duration {
	if d < floor {
		return floor
	}
	return d
}

// Next returns the wait before the next attempt and doubles the one after.
func (b *Backoff) Next() time.Duration {
	d := b.next
	b.next = min(2*b.next, b.max)
	return Jitter(d)
}

// Reset makes the next wait the first one again: call it after a success.
func (b *Backoff) Reset() { b.next = b.first }

// Wait sleeps for Next() and reports whether it did; it returns false as
// soon as ctx is done.
func (b *Backoff) Wait(ctx context.Context) bool { return Sleep(ctx, b.Next()) }

// Jitter returns d moved by a random amount within ±20%.
func Jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return d - d/5 + rand.N(2*d/5+1)
}

// Sleep waits d and reports true, or reports false as soon as ctx is done.
// It paces retries; it is never a way to wait for another goroutine.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
