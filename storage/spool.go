package storage

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/meshmon/meshmon"
	bolt "go.etcd.io/bbolt"
)

// Entry is one spooled message and its sequence number.
type Entry struct {
	Seq uint64
	Msg meshmon.Message
}

// StateUpdate sets (or, with a nil Value, deletes) the stored state of one
// check of one device.
type StateUpdate struct {
	Device, Check string
	Value         []byte
}

// commitReq is one Commit or Ack call waiting to be written.
type commitReq struct {
	enc    [][]byte // encoded messages
	size   int64    // sum of len(enc)
	states []StateUpdate
	ack    uint64 // Ack: delete the entries up to this Seq

	err  error
	lead bool          // set before wake is closed: run the next group
	wake chan struct{} // closed when err is final or lead is set
}

// Commit appends msgs to the spool, in order, and applies the state updates,
// in one fsynced transaction: after a crash either all of it is there or none
// of it. A StateUpdate with a nil Value deletes that state.
//
// Commit is built for many concurrent callers: calls that arrive while a
// transaction is being written wait and are then written together in the
// next one, sharing its fsync (group commit). A lone caller is written at
// once, with no batching delay. Each call still succeeds or fails on its own.
//
// It fails with an error wrapping ErrSpoolFull if the spool would pass
// Options.MaxSpoolBytes, or if the file system is full (then it also wraps
// syscall.ENOSPC); in both cases nothing of this call was written, everything
// committed before is intact, and a later Commit succeeds once Ack has freed
// space. It returns ErrClosed after Close.
func (db *DB) Commit(msgs []meshmon.Message, states []StateUpdate) error {
	if db.closed.Load() {
		return ErrClosed
	}
	if len(msgs) == 0 && len(states) == 0 {
		return nil
	}
	for _, s := range states {
		if err := checkStateKey(s.Device, s.Check); err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		if len(s.Value) > bolt.MaxValueSize {
			return fmt.Errorf("commit: state %s/%s: value of %d bytes is too large", s.Device, s.Check, len(s.Value))
		}
	}
	req := &commitReq{states: states, wake: make(chan struct{})}
	req.enc = make([][]byte, len(msgs))
	encode := encodeMessage
	if db.opt.legacySpool {
		encode = encodeV2
	}
	for i, m := range msgs {
		b := encode(m)
		if len(b) > bolt.MaxValueSize {
			return fmt.Errorf("commit: message %s: %d bytes is too large", m.ID, len(b))
		}
		req.enc[i] = b
		req.size += int64(len(b))
	}
	return db.write(req)
}

// write queues req for the next group commit and returns its error once
// it is written (see Commit).
func (db *DB) write(req *commitReq) error {
	db.cmu.Lock()
	db.queue = append(db.queue, req)
	if db.committing {
		db.cmu.Unlock()
		<-req.wake
		if !req.lead {
			return req.err
		}
	} else {
		db.committing = true
		db.cmu.Unlock()
	}

	// Why not bbolt's DB.Batch: it holds every call for up to MaxBatchDelay
	// (10ms) waiting for company, so a lone worker gets about 85 commits/s
	// instead of one per fsync, and 16 workers got 1.3k/s against 9-10k/s
	// with this queue (see BenchmarkCommitParallel).
	//
	// This goroutine leads: write everything queued so far (its own request
	// included) in one transaction, then hand the lead to the oldest waiter,
	// so no caller is kept writing other callers' groups forever.
	db.cmu.Lock()
	group := db.queue
	db.queue = nil
	db.cmu.Unlock()

	db.commitGroup(group)
	for _, r := range group {
		if r != req {
			close(r.wake)
		}
	}

	db.cmu.Lock()
	if len(db.queue) > 0 {
		next := db.queue[0]
		next.lead = true
		close(next.wake)
	} else {
		db.committing = false
	}
	db.cmu.Unlock()
	return req.err
}

// commitGroup writes a group of requests in one transaction, setting each
// one's err. If the transaction fails as a whole and holds more than one
// request, each is retried alone, so one request's failure is not another's.
func (db *DB) commitGroup(group []*commitReq) {
	err := db.update(func(tx *bolt.Tx) error { return db.applyGroup(tx, group) })
	if err == nil {
		return
	}
	if len(group) == 1 {
		group[0].err = err
		return
	}
	for _, r := range group {
		one := []*commitReq{r}
		if err := db.update(func(tx *bolt.Tx) error { return db.applyGroup(tx, one) }); err != nil {
			r.err = err
		}
	}
}

// applyGroup writes the requests of a group. A request that would pass the
// spool limit is refused (its err set) and the others go ahead. It is safe to
// run again after a rollback: it writes only through tx and resets err.
func (db *DB) applyGroup(tx *bolt.Tx, group []*commitReq) error {
	spool := tx.Bucket(bucketSpool)
	if !db.opt.legacySpool {
		spool.FillPercent = spoolFillPercent
	}
	meta := tx.Bucket(bucketMeta)
	states := tx.Bucket(bucketState)
	n, size := getUint(meta, keySpoolN), int64(getUint(meta, keySpoolBytes))
	for _, r := range group {
		r.err = nil
		if r.ack > 0 {
			var err error
			if n, size, err = ackUpTo(spool, n, size, r.ack); err != nil {
				return fmt.Errorf("spool %s: ack %d: %w", db.path, r.ack, err)
			}
			continue
		}
		if max := db.opt.MaxSpoolBytes; max > 0 && r.size > 0 && size+r.size > max {
			r.err = fmt.Errorf("spool %s: %w: %d bytes spooled, %d more would pass the limit of %d",
				db.path, ErrSpoolFull, size, r.size, max)
			continue
		}
		for _, b := range r.enc {
			seq, err := spool.NextSequence()
			if err != nil {
				return fmt.Errorf("spool %s: next sequence: %w", db.path, err)
			}
			if err := spool.Put(seqKey(seq), b); err != nil {
				return fmt.Errorf("spool %s: append %d: %w", db.path, seq, err)
			}
		}
		n += uint64(len(r.enc))
		size += r.size
		for _, s := range r.states {
			if err := putState(states, s); err != nil {
				return fmt.Errorf("storage %s: %w", db.path, err)
			}
		}
	}
	return putCounters(meta, n, size)
}

func putCounters(meta *bolt.Bucket, n uint64, size int64) error {
	if err := putUint(meta, keySpoolN, n); err != nil {
		return err
	}
	return putUint(meta, keySpoolBytes, uint64(size))
}

// Peek returns the oldest max entries of the spool, oldest first, without
// removing them. It returns nothing when max is not positive. An entry that
// cannot be decoded stops it with an *EntryError (wrapping ErrCorrupt) that
// names the entry's Seq, so the caller can Drop it.
func (db *DB) Peek(max int) ([]Entry, error) { return db.PeekAfter(0, max) }

// PeekAfter is Peek of the entries whose Seq is above after: a sender
// whose earlier entries are confirmed, with their Ack still being
// committed, reads on from there.
func (db *DB) PeekAfter(after uint64, max int) ([]Entry, error) {
	if max <= 0 {
		return nil, nil
	}
	var out []Entry
	err := db.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketSpool).Cursor()
		for k, v := c.Seek(seqKey(after + 1)); k != nil && len(out) < max; k, v = c.Next() {
			seq := binary.BigEndian.Uint64(k)
			m, err := decodeMessage(v)
			if err != nil {
				return &EntryError{Path: db.path, Seq: seq, Err: err}
			}
			out = append(out, Entry{Seq: seq, Msg: m})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Ack deletes every entry with Seq <= upTo: the peer has them. It is
// written with the Commits queued beside it, in their transaction and
// fsync (group commit): on its own, each Ack was a transaction and an
// fsync of its own, and a busy poller's acks took 13 % of its CPU
// (meshmon bench poll --cpu-profile).
func (db *DB) Ack(upTo uint64) error {
	if db.closed.Load() {
		return ErrClosed
	}
	if upTo == 0 {
		return nil
	}
	if err := db.write(&commitReq{ack: upTo, wake: make(chan struct{})}); err != nil {
		return fmt.Errorf("ack %d: %w", upTo, err)
	}
	return nil
}

// ackUpTo deletes the spool's entries up to upTo and returns the spool's
// count and size after.
func ackUpTo(spool *bolt.Bucket, n uint64, size int64, upTo uint64) (uint64, int64, error) {
	c := spool.Cursor()
	// Re-seek after each delete: bbolt's Cursor.Next after Delete can
	// skip an item.
	for k, v := c.First(); k != nil && binary.BigEndian.Uint64(k) <= upTo; k, v = c.First() {
		n, size = n-1, size-int64(len(v))
		if err := c.Delete(); err != nil {
			return n, size, err
		}
	}
	return n, size, nil
}

// Drop deletes the one entry seq, if it is there: a message the peer will
// never accept.
func (db *DB) Drop(seq uint64) error {
	err := db.update(func(tx *bolt.Tx) error {
		spool := tx.Bucket(bucketSpool)
		k := seqKey(seq)
		v := spool.Get(k)
		if v == nil {
			return nil
		}
		meta := tx.Bucket(bucketMeta)
		n, size := getUint(meta, keySpoolN)-1, int64(getUint(meta, keySpoolBytes))-int64(len(v))
		if err := spool.Delete(k); err != nil {
			return err
		}
		return putCounters(meta, n, size)
	})
	if err != nil {
		return fmt.Errorf("drop %d: %w", seq, err)
	}
	return nil
}

// SpoolStats returns the number of spooled entries and their encoded size in
// bytes (what Options.MaxSpoolBytes limits). It reads two counters and does
// not scan the spool.
func (db *DB) SpoolStats() (n int, bytes int64, err error) {
	err = db.view(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		n, bytes = int(getUint(meta, keySpoolN)), int64(getUint(meta, keySpoolBytes))
		return nil
	})
	return n, bytes, err
}

var errEmptyName = errors.New("empty name")
