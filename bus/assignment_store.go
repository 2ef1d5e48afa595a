package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
)

// storeParallel is how many shard writes, reads or removals one member has
// in flight at once.
const storeParallel = 8

// publish stores a as the assignment that follows the one r read or wrote
// last, at revision base (0: none yet): the shards r does not hold, side by
// side, then the index by revision. It returns the index's revision and
// the bytes it wrote. Once the index is stored r holds a's shards, and the
// shards of the assignment it replaced that a does not use are removed.
// When the index is not stored (a newer assignment is there: the watch
// brings it; or the time ran out) r keeps only the shards it wrote, so that
// the same assignment published again writes the rest (the group keeps it
// while its inputs stay the same).
func (r *assignmentReader) publish(ctx context.Context, base uint64, a meshmon.Assignment, maxPayload int64) (uint64, int, error) {
	index, parts, values, err := splitAssignment(a)
	if err != nil {
		return 0, 0, err
	}
	written := len(index)
	var hs []string
	for h, b := range values {
		if int64(len(b)) > maxPayload {
			return 0, 0, fmt.Errorf("a shard of %d bytes, more than the peer's largest message (%d)", len(b), maxPayload)
		}
		_, had := r.have[h]
		if _, ok := r.written[h]; !ok && !had {
			hs = append(hs, h)
			written += len(b)
		}
	}
	revs := make([]uint64, len(hs))
	errs := make([]error, len(hs))
	r.each(hs, func(i int, h string) {
		revs[i], errs[i] = r.kv.Put(ctx, ShardKey(r.site, h), values[h])
	})
	if r.written == nil {
		r.written = map[string]uint64{}
	}
	for i, h := range hs {
		if errs[i] == nil {
			r.written[h] = revs[i]
		}
	}
	if err := errors.Join(errs...); err != nil {
		return 0, 0, fmt.Errorf("poller group assignment shards: %w", err)
	}
	var rev uint64
	if base == 0 {
		rev, err = r.kv.Create(ctx, GroupAssignmentKey(r.site), index)
	} else {
		rev, err = r.kv.Update(ctx, GroupAssignmentKey(r.site), index, base)
	}
	if err != nil {
		return 0, 0, err
	}
	have := make(map[string]shard, len(parts))
	for h, p := range parts {
		have[h] = shard{part: p, rev: r.have[h].rev}
		if rev, ok := r.written[h]; ok {
			have[h] = shard{part: p, rev: rev}
		}
	}
	old := r.have
	if old == nil {
		old = map[string]shard{}
	}
	for h, rev := range r.written {
		if _, ok := have[h]; !ok {
			old[h] = shard{rev: rev} // written for an attempt that changed since
		}
	}
	r.have, r.written = have, nil
	var gone []shard
	var goneKeys []string
	for h, s := range old {
		if _, ok := have[h]; !ok {
			gone = append(gone, s)
			goneKeys = append(goneKeys, h)
		}
	}
	r.each(goneKeys, func(i int, h string) { r.remove(ctx, h, gone[i].rev) })
	return rev, written, nil
}

// remove purges the shard h if its key is still at rev: a newer leader
// that needs the same shard writes it again (it holds it only when the
// assignment it replaces did), so the purge of a deposed leader never
// takes a shard from under a newer assignment. The purge's marker expires.
func (r *assignmentReader) remove(ctx context.Context, h string, rev uint64) {
	if rev == 0 {
		return
	}
	_ = r.kv.Purge(ctx, ShardKey(r.site, h), jetstream.LastRevision(rev), jetstream.PurgeTTL(pollersMarkerTTL))
}

// sweep removes the shards that no assignment uses: those a leader wrote
// and then could not store its index, or died before it did. Only shards
// written before the index at rev, which r holds, are removed: a later one
// may be a newer leader's.
func (r *assignmentReader) sweep(ctx context.Context, rev uint64) {
	w, err := r.kv.Watch(ctx, ShardKey(r.site, "*"), jetstream.MetaOnly(), jetstream.IgnoreDeletes())
	if err != nil {
		return
	}
	defer func() { _ = w.Stop() }()
	var keys []string
	var revs []uint64
	for e := range w.Updates() {
		if e == nil {
			break
		}
		h := e.Key()[len(ShardKey(r.site, "")):]
		if _, ok := r.have[h]; !ok && e.Revision() < rev {
			keys = append(keys, h)
			revs = append(revs, e.Revision())
		}
	}
	r.each(keys, func(i int, h string) { r.remove(ctx, h, revs[i]) })
}

// each calls f for every element of hs, storeParallel at a time, and
// waits for them.
func (r *assignmentReader) each(hs []string, f func(i int, h string)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, storeParallel)
	for i, h := range hs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			f(i, h)
		})
	}
	wg.Wait()
}
