package bus

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
)

// An assignment is stored in shards, so that no message grows with the
// site's device count beyond a bound. Device d lies in shard
// fnv32a(d) mod n, n = ceil(devices/shardDevices); each shard is a
// partial assignment (owners, since and prev of its devices: shardValue,
// gzipped past 1 KiB: about 40 KB for 4,096 devices) at the key
// <site>.assignment.<h>, where h is the first 8 bytes of the value's
// SHA-256 in hex. The index at GroupAssignmentKey names the shards in
// order, with the leader, the members and the time; its revision is the
// assignment's (what events carry), and the leader writes it by revision,
// so that a deposed leader cannot overwrite a newer one.
//
// A shard's key names its content, so a shard never changes once
// written: a member that read the index of revision r reads exactly the
// shards of r (it checks each value against its key) however the leader
// moves on meanwhile, and reads only the shards it does not hold yet.
// The leader writes the shards an assignment needs before its index, and
// removes the shards of the index it replaced after (a purge, expecting
// the revision it knows, with a marker that expires); a member that finds
// a shard gone reads the newer index the watch brings next.
//
// Earlier releases stored the whole assignment as one value at the
// index's key (DecodeAssignment: plain JSON, gzipped past 64 KiB), which
// passes NATS's 1 MB message limit near 80,000 devices. A member of this
// release reads that value still (a leader of the older release during an
// upgrade); a member of an older release cannot read an index (its owners
// field is a string, so the old member logs an undecodable assignment and
// keeps polling the devices it had until it is upgraded).

// shardDevices is the most devices one shard holds (a variable for the
// tests, which shard small assignments). A failover rewrites every shard
// (each holds devices of every member), one write and one fsync each at
// the site peer: with 1,024 a shard, the 30 writes of a failover at
// 30,000 devices took the leader about 0.5 s on a loaded peer and a
// member's kill took 0.85 to 1.46 s to its assignment; with 4,096 (8
// shards) 0.30 and 0.33 s (issue 23; 43 ms against 24 ms in process on a
// quiet machine). A shard stays far below NATS's 1 MB message limit.
var shardDevices = 4096

// assignmentPlainMax is the largest assignment (or shard) stored as plain
// JSON.
const assignmentPlainMax = 64 << 10

// assignmentMax bounds the JSON a gzipped assignment may unpack to (some
// 800,000 devices).
const assignmentMax = 64 << 20

// indexFormat marks an index (version 2 of the assignment's storage).
const indexFormat = 2

// assignmentIndex is the value at GroupAssignmentKey.
type assignmentIndex struct {
	Format  int       `json:"format"`
	Leader  string    `json:"leader"`
	Members []string  `json:"members"`
	Devices int       `json:"devices"`
	Shards  []string  `json:"shards"` // shard i's content hash
	Time    time.Time `json:"time"`
	// Owners is no map here, so that a member of an earlier release,
	// which reads this key as a whole assignment, refuses it.
	Owners string `json:"owners"`
}

// shard is one shard of an assignment as a member holds it: the partial
// assignment and the revision of its key.
type shard struct {
	part *shardValue
	rev  uint64
}

// ShardKey is the key in GroupBucket of the shard of site's assignment
// whose content hash is h: <site>.assignment.<h>.
func ShardKey(site, h string) string { return GroupAssignmentKey(site) + "." + h }

// shardOf is the shard of n that holds device d.
func shardOf(d string, n int) int {
	f := fnv.New32a()
	_, _ = f.Write([]byte(d))
	return int(f.Sum32() % uint32(n))
}

// contentHash names a shard's value.
func contentHash(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:8])
}

// splitAssignment is a's index and its shards, by content hash, as stored.
func splitAssignment(a meshmon.Assignment) (index []byte, parts map[string]*shardValue, values map[string][]byte, err error) {
	n := max(1, (len(a.Owners)+shardDevices-1)/shardDevices)
	names := make([][]string, n)
	for d := range a.Owners {
		i := shardOf(d, n)
		names[i] = append(names[i], d)
	}
	idx := assignmentIndex{Format: indexFormat, Leader: a.Leader, Members: a.Members, Devices: len(a.Owners),
		Time: a.Time, Shards: make([]string, n), Owners: "sharded"}
	parts, values = make(map[string]*shardValue, n), make(map[string][]byte, n)
	for i, ds := range names {
		slices.Sort(ds)
		v := newShardValue(a, ds)
		b, err := v.encode()
		if err != nil {
			return nil, nil, nil, fmt.Errorf("poller group assignment: %w", err)
		}
		h := contentHash(b)
		idx.Shards[i], parts[h], values[h] = h, v, b
	}
	if index, err = json.Marshal(idx); err != nil {
		return nil, nil, nil, fmt.Errorf("poller group assignment: %w", err)
	}
	return index, parts, values, nil
}

// joinShards is the assignment of idx from its shards.
func joinShards(idx assignmentIndex, have map[string]shard) meshmon.Assignment {
	a := meshmon.Assignment{Leader: idx.Leader, Members: idx.Members, Time: idx.Time,
		Owners: make(map[string]string, idx.Devices), Since: make(map[string]time.Time, idx.Devices), Prev: map[string]meshmon.Spell{}}
	for _, h := range idx.Shards {
		have[h].part.addTo(a)
	}
	return a
}

// errShardGone: a shard the index names is gone (a newer index replaced
// it) or holds another value than its name says.
var errShardGone = errors.New("a shard of the assignment is gone: a newer one replaced it")

// assignmentReader reads assignments from a site's group bucket, keeping
// the shards it read, so that each read fetches only the shards it has not
// seen. One goroutine uses it.
type assignmentReader struct {
	kv   jetstream.KeyValue
	site string
	have map[string]shard // content hash -> shard, of the last assignment read
	// Shards this member wrote for an index that it did not store yet
	// (content hash -> revision): a publish that timed out part way is
	// tried again with the same assignment, and writes only the rest.
	// Forgotten when an assignment is read.
	written map[string]shard

	// Shard writes still out (content hash), and those answered after the
	// try that sent them gave up, not yet taken into written (takeLate).
	// The writes run beside the group's loop; mu guards these two.
	mu      sync.Mutex
	pending map[string]bool
	late    map[string]shard
}

// read is the assignment whose index (or whole value, as earlier releases
// stored it) is value, with the shards it needs fetched side by side;
// errShardGone when one of them is gone. On success the reader keeps the
// shards of this assignment only.
func (r *assignmentReader) read(ctx context.Context, value []byte) (meshmon.Assignment, error) {
	r.takeLate()
	written := r.written
	r.written = nil
	idx, ok, err := decodeIndex(value)
	if err != nil {
		return meshmon.Assignment{}, err
	}
	if !ok {
		r.have = nil
		return DecodeAssignment(value)
	}
	// The shards this member wrote for an index whose store it did not see
	// answered (the index may be that one) need no fetch.
	held := r.have
	if len(written) > 0 {
		held = maps.Clone(r.have)
		if held == nil {
			held = map[string]shard{}
		}
		maps.Copy(held, written)
	}
	var missing []string
	for _, h := range idx.Shards {
		if _, ok := held[h]; !ok && !slices.Contains(missing, h) {
			missing = append(missing, h)
		}
	}
	got := make([]shard, len(missing))
	errs := make([]error, len(missing))
	var wg sync.WaitGroup
	sem := make(chan struct{}, storeParallel)
	for i, h := range missing {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			got[i], errs[i] = r.fetch(ctx, h)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return meshmon.Assignment{}, err
	}
	have := make(map[string]shard, len(idx.Shards))
	for _, h := range idx.Shards {
		if s, ok := held[h]; ok {
			have[h] = s
		}
	}
	for i, h := range missing {
		have[h] = got[i]
	}
	r.have = have
	return joinShards(idx, have), nil
}

// fetch reads the shard h.
func (r *assignmentReader) fetch(ctx context.Context, h string) (shard, error) {
	e, err := r.kv.Get(ctx, ShardKey(r.site, h))
	if errors.Is(err, jetstream.ErrKeyNotFound) || err == nil && contentHash(e.Value()) != h {
		return shard{}, fmt.Errorf("shard %s: %w", h, errShardGone)
	}
	if err != nil {
		return shard{}, fmt.Errorf("poller group assignment shard %s: %w", h, err)
	}
	p, err := decodeShard(e.Value())
	if err != nil {
		return shard{}, fmt.Errorf("poller group assignment shard %s: %w", h, err)
	}
	return shard{part: p, rev: e.Revision()}, nil
}

// decodeIndex reads value as an index; ok is false for a whole assignment
// (an earlier release's, or gzipped).
func decodeIndex(value []byte) (idx assignmentIndex, ok bool, err error) {
	if len(value) >= 2 && value[0] == 0x1f && value[1] == 0x8b {
		return idx, false, nil
	}
	var probe struct {
		Format int `json:"format"`
	}
	if err := json.Unmarshal(value, &probe); err != nil {
		return idx, false, fmt.Errorf("poller group assignment: %w", err)
	}
	if probe.Format != indexFormat {
		return idx, false, nil
	}
	if err := json.Unmarshal(value, &idx); err != nil {
		return idx, false, fmt.Errorf("poller group assignment index: %w", err)
	}
	return idx, true, nil
}

// ReadAssignment reads the assignment of site from its group bucket kv
// now: the index and its shards (or the whole value an earlier release
// stored). A site without one has the zero Assignment.
func ReadAssignment(ctx context.Context, kv jetstream.KeyValue, site string) (meshmon.Assignment, error) {
	r := &assignmentReader{kv: kv, site: site}
	for {
		e, err := kv.Get(ctx, GroupAssignmentKey(site))
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return meshmon.Assignment{}, nil
		}
		if err != nil {
			return meshmon.Assignment{}, fmt.Errorf("poller group assignment: %w", err)
		}
		a, err := r.read(ctx, e.Value())
		if errors.Is(err, errShardGone) && ctx.Err() == nil {
			continue // replaced while read: the newer one
		}
		if err != nil {
			return meshmon.Assignment{}, err
		}
		a.Revision = e.Revision()
		return a, nil
	}
}

// EncodeAssignment is a whole assignment (or a shard of one) as stored:
// its JSON, gzipped when longer than 64 KiB.
func EncodeAssignment(a meshmon.Assignment) ([]byte, error) {
	b, err := json.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("poller group assignment: %w", err)
	}
	if len(b) <= assignmentPlainMax {
		return b, nil
	}
	var buf bytes.Buffer
	buf.Grow(len(b) / 8)
	w := gzip.NewWriter(&buf)
	if _, err := w.Write(b); err != nil {
		return nil, fmt.Errorf("poller group assignment: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("poller group assignment: %w", err)
	}
	return buf.Bytes(), nil
}

// DecodeAssignment reads a value that EncodeAssignment made (or plain JSON,
// as earlier versions wrote every assignment). The revision is the
// entry's, which the caller sets.
func DecodeAssignment(b []byte) (meshmon.Assignment, error) {
	var a meshmon.Assignment
	if len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b { // gzip's magic; JSON never starts so
		r, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return a, fmt.Errorf("poller group assignment: %w", err)
		}
		if b, err = io.ReadAll(io.LimitReader(r, assignmentMax)); err != nil {
			return a, fmt.Errorf("poller group assignment: %w", err)
		}
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return a, fmt.Errorf("poller group assignment: %w", err)
	}
	return a, nil
}

// shardValue is a shard as stored: its devices in order, each with its
// owner, since when, and the owner before (an index in Pollers, -1 for
// none) and since when; times in Unix nanoseconds, 0 for none. Columns
// rather than maps of times: encoding and decoding 100,000 devices as
// maps took a second of CPU each way.
type shardValue struct {
	Pollers   []string `json:"pollers"`
	Devices   []string `json:"devices"`
	Owner     []int    `json:"owner"`
	Since     []int64  `json:"since"`
	Prev      []int    `json:"prev"`
	PrevSince []int64  `json:"prev_since"`
}

// shardGzipAbove is the largest shard stored as plain JSON.
const shardGzipAbove = 1 << 10

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

// newShardValue is the shard of a that holds devices (sorted).
func newShardValue(a meshmon.Assignment, devices []string) *shardValue {
	n := len(devices)
	v := &shardValue{Pollers: []string{}, Devices: devices, Owner: make([]int, n), Since: make([]int64, n), Prev: make([]int, n), PrevSince: make([]int64, n)}
	index := func(poller string) int {
		i := slices.Index(v.Pollers, poller) // a handful
		if i < 0 {
			i = len(v.Pollers)
			v.Pollers = append(v.Pollers, poller)
		}
		return i
	}
	for i, d := range devices {
		v.Owner[i], v.Since[i], v.Prev[i] = index(a.Owners[d]), unixNano(a.Since[d]), -1
		if sp, ok := a.Prev[d]; ok {
			v.Prev[i], v.PrevSince[i] = index(sp.Poller), unixNano(sp.Since)
		}
	}
	return v
}

// encode is v as stored: the same for the same v, since its key is its
// hash.
func (v *shardValue) encode() ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil || len(b) <= shardGzipAbove {
		return b, err
	}
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if _, err := w.Write(b); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// decodeShard reads a value that encode made, and checks it.
func decodeShard(b []byte) (*shardValue, error) {
	if len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b {
		r, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		if b, err = io.ReadAll(io.LimitReader(r, assignmentMax)); err != nil {
			return nil, err
		}
	}
	var v shardValue
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	n := len(v.Devices)
	if len(v.Owner) != n || len(v.Since) != n || len(v.Prev) != n || len(v.PrevSince) != n {
		return nil, errors.New("columns of unequal length")
	}
	for i := range n {
		if v.Owner[i] < 0 || v.Owner[i] >= len(v.Pollers) || v.Prev[i] < -1 || v.Prev[i] >= len(v.Pollers) {
			return nil, fmt.Errorf("device %s: no such poller", v.Devices[i])
		}
	}
	return &v, nil
}

// addTo puts v's devices into a.
func (v *shardValue) addTo(a meshmon.Assignment) {
	for i, d := range v.Devices {
		a.Owners[d] = v.Pollers[v.Owner[i]]
		if v.Since[i] != 0 {
			a.Since[d] = fromUnixNano(v.Since[i])
		}
		if p := v.Prev[i]; p >= 0 {
			a.Prev[d] = meshmon.Spell{Poller: v.Pollers[p], Since: fromUnixNano(v.PrevSince[i])}
		}
	}
}
