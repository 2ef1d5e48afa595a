package poller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/internal/backoff"
	"github.com/meshmon/meshmon/storage"
)

// Backoff bounds for retrying the peer.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// drain publishes the spool in order until ctx is done. A message leaves the
// spool only when the peer has acknowledged it (or refused it for good), so
// a crash at any point re-sends at most the unacknowledged tail, which the
// stream drops as duplicates by message id.
func (p *Poller) drain(ctx context.Context) {
	retry := backoff.New(minBackoff, maxBackoff)
	away := false
	why := "" // why the spool is not draining, while away: logged once per reason
	pub, fenced := p.pub, (*fencedPublisher)(nil)
	if p.group != nil {
		fenced = &fencedPublisher{p: p, pub: p.pub}
		pub = fenced
	}
	drainer := NewDrainer(p.store, pub, p.cfg.BatchSize, p.cfg.PublishTimeout)
	defer drainer.Close()
	for ctx.Err() == nil {
		if fenced != nil {
			fenced.dropped = 0
			// Back from a cut, or from a hang (SIGSTOP, a starved
			// process): what was spooled meanwhile is judged against the
			// assignment of now, not the one before.
			if away || p.mayBeStale() {
				if err := p.refreshAssignment(ctx); err != nil {
					if why != "disk full" && peerDiskFull(ctx, p.pub, p.cfg.PublishTimeout) {
						spooled, _, _ := p.store.SpoolStats()
						p.log.Warn("peer disk full; spooling until it stores again", "spooled", spooled, "err", err)
						why = "disk full"
					}
					retry.Wait(ctx)
					continue
				}
			}
		}
		n, batch, err := drainer.Once(ctx)
		if fenced != nil {
			n -= fenced.dropped
		}
		p.published.Add(uint64(n))
		if batch == 0 && err == nil {
			select {
			case <-ctx.Done():
			case <-p.wake:
			}
			continue
		}
		switch {
		case err == nil:
			p.connected.Store(true)
			if away {
				p.log.Info("peer is back; spool draining")
				away, why = false, ""
			}
			retry.Reset()
		case errors.Is(err, ErrCorruptEntry):
			p.corrupt.Add(1)
			p.log.Error("local spool held an undecodable entry; dropped it", "err", err)
		case errors.Is(err, meshmon.ErrRejected):
			p.rejected.Add(1)
			p.log.Error("peer refused a message; dropped it", "err", err)
		case errors.Is(err, errSpoolRead):
			p.log.Error("local spool", "err", err)
			backoff.Sleep(ctx, backoff.Jitter(maxBackoff))
		case ctx.Err() != nil:
			return
		case errors.Is(err, meshmon.ErrPeerDiskFull):
			// The peer answers: it is reachable, and it stores again by
			// itself once its disk has room.
			p.connected.Store(true)
			p.pubDiskFull.Add(1)
			if why != "disk full" {
				spooled, _, _ := p.store.SpoolStats()
				p.log.Warn("peer disk full; spooling until it stores again", "spooled", spooled, "err", err)
				away, why = true, "disk full"
			}
			retry.Wait(ctx)
		default:
			p.connected.Store(false)
			p.pubUnreachable.Add(1)
			if why != "unreachable" {
				spooled, _, _ := p.store.SpoolStats()
				p.log.Warn("peer unreachable; spooling until it returns", "spooled", spooled, "err", err)
				away, why = true, "unreachable"
			}
			if waitConnected(ctx, p.pub) {
				// The connection was down and is back: retry at once,
				// not after a backoff grown while it was down.
				retry.Reset()
				continue
			}
			retry.Wait(ctx)
		}
	}
}

// connWaiter is what a Publisher may also offer: whether its connection to
// the peer is up, and a wait until it is (bus.Publisher has both).
type connWaiter interface {
	Connected() bool
	WaitConnected(ctx context.Context) error
}

// prober is what a Publisher may also offer: whether the peer's JetStream
// answers, with an error wrapping meshmon.ErrPeerDiskFull when its disk is
// full (bus.Publisher has it).
type prober interface {
	Probe(ctx context.Context) error
}

// peerDiskFull reports whether pub can tell that the peer refuses writes
// for a full disk: what keeps a poller in a group from reading its
// assignment, and so from publishing, while the peer's JetStream is down.
func peerDiskFull(ctx context.Context, pub Publisher, timeout time.Duration) bool {
	pr, ok := pub.(prober)
	if !ok {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return errors.Is(pr.Probe(ctx), meshmon.ErrPeerDiskFull)
}

// waitConnected waits until pub's connection is up again if pub can tell
// and it is down now, and reports whether it waited.
func waitConnected(ctx context.Context, pub Publisher) bool {
	cw, ok := pub.(connWaiter)
	if !ok || cw.Connected() {
		return false
	}
	return cw.WaitConnected(ctx) == nil
}

// errSpoolRead marks a failure of the local spool, not of the peer.
var errSpoolRead = errors.New("spool")

// A Drainer sends the spool in order, as DrainOnce does, with the removal
// of what the peer confirmed (the spool's Ack, an fsync) committed in the
// background while it sends the next batch: the ack commit had been on
// every batch's path, and so in every event's wait in the spool
// (docs/performance.md). It reads on after the last message confirmed.
// A crash before an ack is committed re-sends those messages, which the
// stream drops as duplicates by message id, as when the crash came between
// the confirmation and the ack before. One goroutine calls Once; Close
// commits the last ack.
type Drainer struct {
	store   *storage.DB
	pub     Publisher
	batch   int
	timeout time.Duration
	sent    uint64 // the newest Seq the peer confirmed

	mu    sync.Mutex
	want  uint64 // the Ack asked for
	err   error  // of the last Ack committed, until Once returns it
	wake  chan struct{}
	done  chan struct{}
	close sync.Once
}

// NewDrainer returns a Drainer of store's spool to pub, batch messages at
// a time, each batch's publish bounded by timeout.
func NewDrainer(store *storage.DB, pub Publisher, batch int, timeout time.Duration) *Drainer {
	d := &Drainer{store: store, pub: pub, batch: batch, timeout: timeout, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go d.acks()
	return d
}

// acks commits the newest Ack asked for, until Close.
func (d *Drainer) acks() {
	var acked uint64
	for {
		_, open := <-d.wake
		d.mu.Lock()
		upTo := d.want
		d.mu.Unlock()
		if upTo > acked {
			err := d.store.Ack(upTo)
			d.mu.Lock()
			if err != nil {
				d.err = err
			} else {
				acked = upTo
			}
			d.mu.Unlock()
		}
		if !open {
			close(d.done)
			return
		}
	}
}

// ack asks for the spool's entries up to seq to be removed.
func (d *Drainer) ack(seq uint64) {
	d.mu.Lock()
	d.want = max(d.want, seq)
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Close commits the last ack and stops; the spool stays open.
func (d *Drainer) Close() {
	d.close.Do(func() { close(d.wake) })
	<-d.done
}

// Once publishes up to a batch of the oldest spooled messages not yet
// confirmed, as DrainOnce does, and has those the peer confirms removed
// from the spool in the background; an ack that failed is returned by the
// next Once (the messages stay spooled and are sent again after a
// restart, and deduplicated).
func (d *Drainer) Once(ctx context.Context) (published, read int, err error) {
	d.mu.Lock()
	aerr := d.err
	d.err = nil
	d.mu.Unlock()
	if aerr != nil {
		return 0, 0, fmt.Errorf("%w: ack: %w", errSpoolRead, aerr)
	}
	entries, err := d.store.PeekAfter(d.sent, d.batch)
	return publishEntries(ctx, d.store, d.pub, entries, err, d.timeout, func(seq uint64) error {
		d.sent = seq
		d.ack(seq)
		return nil
	})
}

// DrainOnce publishes up to batch of the oldest spooled messages and removes
// from the spool those the publisher confirms. It returns how many were
// published and how many it read (0 when the spool is empty). A message the
// peer refuses for good is dropped from the spool and reported with an error
// wrapping meshmon.ErrRejected; a spool entry that cannot be decoded is
// dropped and reported with an error wrapping ErrCorruptEntry; any other error leaves the unconfirmed messages
// in the spool to be tried again.
func DrainOnce(ctx context.Context, store *storage.DB, pub Publisher, batch int, timeout time.Duration) (published, read int, err error) {
	entries, err := store.Peek(batch)
	return publishEntries(ctx, store, pub, entries, err, timeout, store.Ack)
}

// publishEntries publishes entries (read from store with err) and calls
// ack with the Seq of the last one the peer confirmed, as DrainOnce says.
func publishEntries(ctx context.Context, store *storage.DB, pub Publisher, entries []storage.Entry, err error, timeout time.Duration,
	ack func(upTo uint64) error) (published, read int, _ error) {
	var bad *storage.EntryError
	if errors.As(err, &bad) {
		// An entry that cannot be decoded would block the spool for good.
		if derr := store.Drop(bad.Seq); derr != nil {
			return 0, 0, fmt.Errorf("%w: drop corrupt spool entry %d: %w", errSpoolRead, bad.Seq, derr)
		}
		return 0, 1, fmt.Errorf("%w: dropped spool entry %d: %w", ErrCorruptEntry, bad.Seq, err)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("%w: %w", errSpoolRead, err)
	}
	if len(entries) == 0 {
		return 0, 0, nil
	}
	msgs := make([]meshmon.Message, len(entries))
	for i, e := range entries {
		msgs[i] = e.Msg
	}
	bctx, cancel := context.WithTimeout(ctx, timeout)
	n, err := pub.PublishBatch(bctx, msgs)
	cancel()
	if n > 0 {
		if aerr := ack(entries[n-1].Seq); aerr != nil {
			// Published but still spooled: re-sent later, and deduplicated.
			return n, len(entries), fmt.Errorf("%w: ack: %w", errSpoolRead, aerr)
		}
	}
	if errors.Is(err, meshmon.ErrRejected) && n < len(entries) {
		// The peer will never take this one: drop it so the rest keep moving.
		bad := entries[n].Msg
		if derr := store.Drop(entries[n].Seq); derr != nil {
			return n, len(entries), fmt.Errorf("drop refused message %s: %w", bad.Subject(), derr)
		}
		return n, len(entries), fmt.Errorf("message %s (id %s): %w", bad.Subject(), bad.ID, err)
	}
	return n, len(entries), err
}
