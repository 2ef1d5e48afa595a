package bus

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
)

// storeParallel is how many shard writes, reads or removals one member has
// in flight at once: a failover rewrites most of a site's shards (30 at
// 30,000 devices), and on a starved peer each write takes a good part of
// the half lease the leader gives them, so they go out together.
const storeParallel = 32

// publish stores a as the assignment that follows the one r read or wrote
// last, at revision base (0: none yet): the shards r does not hold, side by
// side, then the index by revision. It returns the index's revision, the
// bytes it wrote, and the shards that no longer serve (content hash ->
// revision), for removeShards. Once the index is stored r holds a's
// shards.
// When the index is not stored (a newer assignment is there: the watch
// brings it; or the time ran out) r keeps only the shards it wrote, so that
// the same assignment published again writes the rest (the group keeps it
// while its inputs stay the same).
func (r *assignmentReader) publish(ctx context.Context, base uint64, a meshmon.Assignment, maxPayload int64) (uint64, int, map[string]uint64, error) {
	index, parts, values, err := splitAssignment(a)
	if err != nil {
		return 0, 0, nil, err
	}
	r.takeLate()
	written := len(index)
	var hs []string
	r.mu.Lock()
	for h, b := range values {
		if int64(len(b)) > maxPayload {
			r.mu.Unlock()
			return 0, 0, nil, fmt.Errorf("a shard of %d bytes, more than the peer's largest message (%d)", len(b), maxPayload)
		}
		_, had := r.have[h]
		if _, ok := r.written[h]; !ok && !had && !r.pending[h] {
			hs = append(hs, h)
			written += len(b)
		}
	}
	if r.pending == nil {
		r.pending, r.late = map[string]bool{}, map[string]shard{}
	}
	for _, h := range hs {
		r.pending[h] = true
	}
	r.mu.Unlock()
	// The writes outlive this try (shardWriteWait): on a starved peer the
	// answers come after the leader's half lease, and a write answered
	// late is one the next try need not send again (takeLate).
	done := make(chan error, len(hs))
	go r.each(hs, func(_ int, h string) {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shardWriteWait)
		defer cancel()
		rev, err := r.kv.Put(wctx, ShardKey(r.site, h), values[h])
		r.mu.Lock()
		delete(r.pending, h)
		if err == nil {
			r.late[h] = shard{part: parts[h], rev: rev}
		}
		r.mu.Unlock()
		done <- err
	})
	answered, failed := 0, 0
	var first error
wait:
	for answered < len(hs) {
		select {
		case err := <-done:
			answered++
			if err != nil {
				if failed++; first == nil {
					first = err
				}
			}
		case <-ctx.Done():
			first = cmp.Or(first, ctx.Err())
			break wait
		}
	}
	r.takeLate()
	if left := len(hs) - answered + failed; left > 0 {
		return 0, 0, nil, fmt.Errorf("poller group assignment shards: %d of %d not written yet (the next try writes the rest): %w", left, len(hs), first)
	}
	var rev uint64
	if base == 0 {
		rev, err = r.kv.Create(ctx, GroupAssignmentKey(r.site), index)
	} else {
		rev, err = r.kv.Update(ctx, GroupAssignmentKey(r.site), index, base)
	}
	if err != nil {
		return 0, 0, nil, err
	}
	have := make(map[string]shard, len(parts))
	for h, p := range parts {
		have[h] = shard{part: p, rev: r.have[h].rev}
		if w, ok := r.written[h]; ok {
			have[h] = shard{part: p, rev: w.rev}
		}
	}
	old := r.have
	if old == nil {
		old = map[string]shard{}
	}
	for h, w := range r.written {
		if _, ok := have[h]; !ok {
			old[h] = shard{rev: w.rev} // written for an attempt that changed since
		}
	}
	r.have, r.written = have, nil
	gone := map[string]uint64{}
	for h, s := range old {
		if _, ok := have[h]; !ok && s.rev != 0 {
			gone[h] = s.rev
		}
	}
	return rev, written, gone, nil
}

// shardWriteWait bounds one shard write, which may outlive the try that
// sent it.
const shardWriteWait = 10 * time.Second

// takeLate takes the shard writes answered since the last look into
// r.written.
func (r *assignmentReader) takeLate() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.late) == 0 {
		return
	}
	if r.written == nil {
		r.written = map[string]shard{}
	}
	maps.Copy(r.written, r.late)
	clear(r.late)
}

// holding returns the content hashes of the shards r holds.
func (r *assignmentReader) holding() map[string]bool {
	held := make(map[string]bool, len(r.have))
	for h := range r.have {
		held[h] = true
	}
	return held
}

// removeShards removes the shards gone (content hash -> revision) that
// publish or holding named, each if its key is still at that revision.
// It uses no state of r but the bucket, so it may run beside r's next
// publish.
func (r *assignmentReader) removeShards(ctx context.Context, gone map[string]uint64) {
	hs := make([]string, 0, len(gone))
	for h := range gone {
		hs = append(hs, h)
	}
	r.each(hs, func(_ int, h string) { r.remove(ctx, h, gone[h]) })
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

// sweep returns the shards that no assignment uses, for removeShards:
// those a leader wrote and then could not store its index, or died before
// it did. Only shards written before the index at rev, which r holds, are
// named: a later one may be a newer leader's. held is what holding
// returned when the index at rev was stored; sweep uses no other state of
// r, so it may run beside r's next publish.
func (r *assignmentReader) sweep(ctx context.Context, rev uint64, held map[string]bool) map[string]uint64 {
	w, err := r.kv.Watch(ctx, ShardKey(r.site, "*"), jetstream.MetaOnly(), jetstream.IgnoreDeletes())
	if err != nil {
		return nil
	}
	defer func() { _ = w.Stop() }()
	unused := map[string]uint64{}
	for e := range w.Updates() {
		if e == nil {
			break
		}
		h := e.Key()[len(ShardKey(r.site, "")):]
		if !held[h] && e.Revision() < rev {
			unused[h] = e.Revision()
		}
	}
	return unused
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
