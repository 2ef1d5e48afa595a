package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/internal/wan"
)

// sameAssignment fails unless got holds what want does (but its revision).
func sameAssignment(t testing.TB, got, want meshmon.Assignment) {
	t.Helper()
	if got.Leader != want.Leader || fmt.Sprint(got.Members) != fmt.Sprint(want.Members) || !got.Time.Equal(want.Time) {
		t.Fatalf("read leader %s, members %v, time %s; want %s, %v, %s", got.Leader, got.Members, got.Time, want.Leader, want.Members, want.Time)
	}
	if len(got.Owners) != len(want.Owners) || len(got.Since) != len(want.Since) || len(got.Prev) != len(want.Prev) {
		t.Fatalf("read %d owners, %d since, %d prev; want %d, %d, %d", len(got.Owners), len(got.Since), len(got.Prev), len(want.Owners), len(want.Since), len(want.Prev))
	}
	for d, p := range want.Owners {
		if got.Owners[d] != p || !got.Since[d].Equal(want.Since[d]) || got.Prev[d] != want.Prev[d] {
			t.Fatalf("device %s: read %s since %s, prev %v; want %s since %s, prev %v", d, got.Owners[d], got.Since[d], got.Prev[d], p, want.Since[d], want.Prev[d])
		}
	}
}

// TestAssignmentShards: the assignment of 100,000 devices is stored as an
// index of a few KB and shards of some ten, none near NATS's 1 MB, and
// reads back as it was; a member of an earlier release refuses the index
// rather than take it for an assignment of no devices.
func TestAssignmentShards(t *testing.T) {
	for _, n := range []int{0, 10, 100_000} {
		a := bigAssignment(n)
		index, parts, values, err := splitAssignment(a)
		if err != nil {
			t.Fatal(err)
		}
		largest, total := 0, len(index)
		for _, b := range values {
			largest = max(largest, len(b))
			total += len(b)
		}
		t.Logf("%d devices: index %d bytes, %d shards, the largest %d bytes, %d bytes in all", n, len(index), len(values), largest, total)
		if len(index) > 8<<10 || largest > 64<<10 {
			t.Fatalf("%d devices: index %d bytes, a shard of %d bytes", n, len(index), largest)
		}
		idx, ok, err := decodeIndex(index)
		if err != nil || !ok {
			t.Fatalf("index: %v, %v", ok, err)
		}
		have := map[string]shard{}
		for h, p := range parts {
			q, err := decodeShard(values[h])
			if err != nil || contentHash(values[h]) != h || len(q.Devices) != len(p.Devices) {
				t.Fatalf("shard %s: %v", h, err)
			}
			have[h] = shard{part: q}
		}
		sameAssignment(t, joinShards(idx, have), a)
		var old meshmon.Assignment
		if err := json.Unmarshal(index, &old); err == nil {
			t.Fatal("an earlier release reads the index as an assignment")
		}
	}
}

// TestAssignmentStore: through a real server, a leader stores assignments
// and a member reads them, fetching only the shards it lacks; the shards
// of a replaced assignment are removed; a deposed leader stores nothing and
// removes no shard that a newer assignment uses; a leader sweeps the
// shards of an assignment that was never stored.
func TestAssignmentStore(t *testing.T) {
	defer func(n int) { shardDevices = n }(shardDevices)
	shardDevices = 1024 // the counts below are of shards of 1,024 devices
	_, nc, js := runJS(t)
	ctx := testCtx(t)
	kv, err := js.KeyValue(ctx, GroupBucket)
	if err != nil {
		t.Fatal(err)
	}
	max := nc.MaxPayload()
	leader := &assignmentReader{kv: kv, site: "hq"}
	member := &assignmentReader{kv: kv, site: "hq"}
	fetched := func(r *assignmentReader, value []byte) (meshmon.Assignment, int) {
		t.Helper()
		before := maps.Clone(r.have)
		a, err := r.read(ctx, value)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for h := range r.have {
			if _, ok := before[h]; !ok {
				n++
			}
		}
		return a, n
	}
	index := func() jetstream.KeyValueEntry {
		t.Helper()
		e, err := kv.Get(ctx, GroupAssignmentKey("hq"))
		if err != nil {
			t.Fatal(err)
		}
		return e
	}

	// 5,000 devices, three members: five shards.
	a1 := bigAssignment(5_000)
	a1.Members = []string{"poller-1", "poller-2", "poller-3"}
	rev1, _, _, err := leader.publish(ctx, 0, a1, max)
	if err != nil {
		t.Fatal(err)
	}
	got, n := fetched(member, index().Value())
	sameAssignment(t, got, a1)
	if n != 5 {
		t.Fatalf("the member fetched %d shards, want 5", n)
	}

	// A device is added: one shard changes, and the member fetches it
	// only; the shard it replaced is removed.
	a2 := a1
	a2.Owners, a2.Since = maps.Clone(a1.Owners), maps.Clone(a1.Since)
	a2.Owners["site-device-new"], a2.Since["site-device-new"] = "poller-3", a1.Time
	old := maps.Clone(leader.have)
	rev2, _, gone, err := leader.publish(ctx, rev1, a2, max)
	if err != nil {
		t.Fatal(err)
	}
	leader.removeShards(ctx, gone)
	got, n = fetched(member, index().Value())
	sameAssignment(t, got, a2)
	if n != 1 {
		t.Fatalf("the member fetched %d shards for one device added, want 1", n)
	}
	for h := range old {
		if _, ok := leader.have[h]; ok {
			continue
		}
		if _, err := kv.Get(ctx, ShardKey("hq", h)); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Fatalf("the replaced shard %s: %v, want it gone", h, err)
		}
	}

	// A deposed leader, still at revision 1, stores nothing.
	deposed := &assignmentReader{kv: kv, site: "hq", have: old}
	a3 := bigAssignment(5_000)
	if _, _, _, err := deposed.publish(ctx, rev1, a3, max); !errors.Is(err, jetstream.ErrKeyExists) {
		t.Fatalf("a deposed leader's assignment: %v, want ErrKeyExists", err)
	}
	if e := index(); e.Revision() != rev2 {
		t.Fatalf("the index moved to %d", e.Revision())
	}
	// Its late removal of a shard the newer assignment wrote again
	// fails: the key is at a newer revision.
	for h, s := range leader.have {
		if _, ok := old[h]; ok {
			deposed.remove(ctx, h, s.rev-1)
			if _, err := kv.Get(ctx, ShardKey("hq", h)); err != nil {
				t.Fatalf("a deposed leader removed shard %s: %v", h, err)
			}
		}
	}
	// The shards it wrote for nothing are swept by a leader, but for one
	// written after the leader's assignment.
	leader.removeShards(ctx, leader.sweep(ctx, rev2, leader.holding()))
	late, err := kv.Put(ctx, ShardKey("hq", "0123456789abcdef"), []byte("{}"))
	if err != nil {
		t.Fatal(err)
	}
	rev3, _, gone, err := leader.publish(ctx, rev2, a2, max) // nothing to write but the index
	if err != nil {
		t.Fatal(err)
	}
	if len(gone) != 0 {
		t.Fatalf("the same assignment again leaves %d shards to remove, want none", len(gone))
	}
	leader.removeShards(ctx, leader.sweep(ctx, rev2, leader.holding()))
	keys := shardKeys(ctx, t, kv)
	if len(keys) != len(leader.have)+1 || keys[ShardKey("hq", "0123456789abcdef")] != late {
		t.Fatalf("after the sweep: %v; want the assignment's %d shards and the late one", keys, len(leader.have))
	}
	got, n = fetched(member, index().Value())
	sameAssignment(t, got, a2)
	if n != 0 || rev3 <= rev2 {
		t.Fatalf("the same assignment again: %d shards fetched, revision %d after %d", n, rev3, rev2)
	}
}

// shardKeys is every shard key of hq's group with its revision.
func shardKeys(ctx context.Context, t testing.TB, kv jetstream.KeyValue) map[string]uint64 {
	t.Helper()
	w, err := kv.Watch(ctx, ShardKey("hq", "*"), jetstream.MetaOnly(), jetstream.IgnoreDeletes())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()
	out := map[string]uint64{}
	for e := range w.Updates() {
		if e == nil {
			break
		}
		out[e.Key()] = e.Revision()
	}
	return out
}

// BenchmarkAssignmentStore prints, for sites of 10,000, 30,000 and 100,000
// devices, what one assignment costs through a real server (on disk): the
// leader's decision (meshmon.NextAssignment), storing it whole (a new
// leader) and a member reading it whole (a member that starts), then a
// failover (one of three members dies: a third of the devices move) stored
// and read incrementally; with the bytes written and the largest message.
func BenchmarkAssignmentStore(b *testing.B) {
	for _, n := range []int{10_000, 30_000, 100_000} {
		b.Run(fmt.Sprintf("devices=%d", n), func(b *testing.B) {
			_, nc, js := runJS(b)
			ctx := testCtx(b)
			kv, err := js.KeyValue(ctx, GroupBucket)
			if err != nil {
				b.Fatal(err)
			}
			t0 := time.Date(2026, 12, 3, 6, 0, 0, 0, time.UTC)
			devices := map[string]int{}
			for i := range n {
				devices[fmt.Sprintf("site-device-%06d", i)] = 2
			}
			three := []string{"poller-1", "poller-2", "poller-3"}
			var assign, storeAll, readAll, storeMove, readMove time.Duration
			var bytesAll, bytesMove, largest, indexBytes int
			for i := 0; i < b.N; i++ {
				_ = kv.Purge(ctx, GroupAssignmentKey("hq"))
				start := time.Now()
				a, _ := meshmon.NextAssignment(meshmon.Assignment{}, "poller-1", three, devices, t0)
				moved, _ := meshmon.NextAssignment(a, "poller-1", three[:2], devices, t0.Add(time.Minute))
				assign += time.Since(start) / 2
				leader := &assignmentReader{kv: kv, site: "hq"}
				member := &assignmentReader{kv: kv, site: "hq"}
				start = time.Now()
				rev, w, _, err := leader.publish(ctx, 0, a, nc.MaxPayload())
				if err != nil {
					b.Fatal(err)
				}
				storeAll += time.Since(start)
				bytesAll = w
				e, _ := kv.Get(ctx, GroupAssignmentKey("hq"))
				indexBytes = len(e.Value())
				start = time.Now()
				if _, err := member.read(ctx, e.Value()); err != nil {
					b.Fatal(err)
				}
				readAll += time.Since(start)
				start = time.Now()
				if _, w, _, err = leader.publish(ctx, rev, moved, nc.MaxPayload()); err != nil {
					b.Fatal(err)
				}
				storeMove += time.Since(start)
				bytesMove = w
				e, _ = kv.Get(ctx, GroupAssignmentKey("hq"))
				start = time.Now()
				if _, err := member.read(ctx, e.Value()); err != nil {
					b.Fatal(err)
				}
				readMove += time.Since(start)
				for h := range leader.have {
					s, _ := kv.Get(ctx, ShardKey("hq", h))
					largest = max(largest, len(s.Value()))
				}
			}
			ms := func(d time.Duration) float64 { return float64(d) / float64(b.N) / 1e6 }
			b.ReportMetric(ms(assign), "assign-ms")
			b.ReportMetric(ms(storeAll), "store-all-ms")
			b.ReportMetric(ms(readAll), "read-all-ms")
			b.ReportMetric(ms(storeMove), "store-failover-ms")
			b.ReportMetric(ms(readMove), "read-failover-ms")
			b.ReportMetric(float64(bytesAll), "bytes-all")
			b.ReportMetric(float64(bytesMove), "bytes-failover")
			b.ReportMetric(float64(largest), "largest-msg-bytes")
			b.ReportMetric(float64(indexBytes), "index-bytes")
		})
	}
}

// TestAssignmentPublishResumes: a publish whose index is not stored keeps
// the shards it wrote, and the same assignment published again writes the
// index only (a leader on a loaded machine ran out of time every attempt,
// each writing every shard again); a member reads it whole.
func TestAssignmentPublishResumes(t *testing.T) {
	defer func(n int) { shardDevices = n }(shardDevices)
	shardDevices = 1024 // the counts below are of shards of 1,024 devices
	_, nc, js := runJS(t)
	ctx := testCtx(t)
	kv, err := js.KeyValue(ctx, GroupBucket)
	if err != nil {
		t.Fatal(err)
	}
	leader := &assignmentReader{kv: kv, site: "hq"}
	a := bigAssignment(3_000)
	if _, _, _, err := leader.publish(ctx, 7, a, nc.MaxPayload()); err == nil {
		t.Fatal("an index at a revision that is not there was stored")
	}
	if len(leader.written) != 3 {
		t.Fatalf("the leader kept %d shards written, want 3", len(leader.written))
	}
	rev, n, _, err := leader.publish(ctx, 0, a, nc.MaxPayload())
	if err != nil {
		t.Fatal(err)
	}
	index, _ := splitIndexSize(t, a)
	if n != index {
		t.Fatalf("the second attempt wrote %d bytes, want the index's %d only", n, index)
	}
	e, err := kv.Get(ctx, GroupAssignmentKey("hq"))
	if err != nil || e.Revision() != rev {
		t.Fatalf("the index: %v, %v", e, err)
	}
	got, err := (&assignmentReader{kv: kv, site: "hq"}).read(ctx, e.Value())
	if err != nil {
		t.Fatal(err)
	}
	sameAssignment(t, got, a)
}

// splitIndexSize is the size of a's index and the number of its shards.
func splitIndexSize(t *testing.T, a meshmon.Assignment) (int, int) {
	t.Helper()
	index, parts, _, err := splitAssignment(a)
	if err != nil {
		t.Fatal(err)
	}
	return len(index), len(parts)
}

// TestAssignmentPublishTakesLateWrites: shard writes answered after the try
// that sent them gave up (a slow peer) count for the next try, which sends
// none of them again and writes the index only.
func TestAssignmentPublishTakesLateWrites(t *testing.T) {
	defer func(n int) { shardDevices = n }(shardDevices)
	shardDevices = 1024 // the counts below are of shards of 1,024 devices
	ts, nc, _ := runJS(t)
	ctx := testCtx(t)
	slow, err := wan.NewProxy(strings.TrimPrefix(ts.srv.ClientURL(), "nats://"))
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	slow.Delay(200 * time.Millisecond)
	_, js := connect(t, "nats://"+slow.Addr())
	kv, err := js.KeyValue(ctx, GroupBucket)
	if err != nil {
		t.Fatal(err)
	}
	leader := &assignmentReader{kv: kv, site: "hq"}
	a := bigAssignment(3_000)
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond) // less than a round trip
	_, _, _, err = leader.publish(short, 0, a, nc.MaxPayload())
	cancel()
	if err == nil || !strings.Contains(err.Error(), "3 of 3 not written yet") {
		t.Fatalf("a try shorter than a round trip: %v, want 3 of 3 shards not written yet", err)
	}
	eventually.True(t, 10*time.Second, "the shard writes answered", func() bool {
		leader.mu.Lock()
		defer leader.mu.Unlock()
		return len(leader.pending) == 0
	})
	_, n, _, err := leader.publish(ctx, 0, a, nc.MaxPayload())
	if err != nil {
		t.Fatal(err)
	}
	if index, _ := splitIndexSize(t, a); n != index {
		t.Fatalf("the next try wrote %d bytes, want the index's %d only", n, index)
	}
	e, err := kv.Get(ctx, GroupAssignmentKey("hq"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := (&assignmentReader{kv: kv, site: "hq"}).read(ctx, e.Value())
	if err != nil {
		t.Fatal(err)
	}
	sameAssignment(t, got, a)
}
