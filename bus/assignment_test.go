package bus

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/meshmon/meshmon"
)

// bigAssignment is the assignment of n devices to three members after one
// member left, at its largest: every device got its owner at another
// instant (devices added one by one), and the left member's third moved,
// so each of those has a previous spell too.
func bigAssignment(n int) meshmon.Assignment {
	t0 := time.Date(2026, 12, 3, 6, 0, 0, 0, time.UTC)
	prev := meshmon.Assignment{Revision: 9, Leader: "poller-1", Members: []string{"poller-1", "poller-2", "poller-3"},
		Owners: map[string]string{}, Since: map[string]time.Time{}, Time: t0}
	devices := map[string]int{}
	for i := range n {
		d := fmt.Sprintf("site-device-%06d", i)
		devices[d] = 2
		prev.Owners[d] = prev.Members[i%3]
		prev.Since[d] = t0.Add(time.Duration(i)*time.Millisecond + time.Duration(i%997)*time.Nanosecond)
	}
	next, _ := meshmon.NextAssignment(prev, "poller-2", []string{"poller-2", "poller-3"}, devices, t0.Add(time.Hour))
	return next
}

// TestAssignmentEncodingSize: an assignment of 50,000 devices fits in one
// message under NATS's default 1 MB limit, and reads back as it was; a
// small one stays plain JSON.
func TestAssignmentEncodingSize(t *testing.T) {
	for _, n := range []int{10, 1_000, 50_000} {
		a := bigAssignment(n)
		b, err := EncodeAssignment(a)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%d devices: %d bytes", n, len(b))
		if len(b) >= 1<<20 {
			t.Fatalf("%d devices: %d bytes, over NATS's 1 MB limit", n, len(b))
		}
		if n == 10 && b[0] != '{' {
			t.Errorf("a small assignment is not plain JSON: % x", b[:8])
		}
		got, err := DecodeAssignment(b)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Owners) != n || len(got.Since) != n || len(got.Prev) != len(a.Prev) || got.Leader != a.Leader {
			t.Fatalf("%d devices: read back %d owners, %d since, %d prev, leader %s", n, len(got.Owners), len(got.Since), len(got.Prev), got.Leader)
		}
		for d, p := range a.Owners {
			if got.Owners[d] != p || !got.Since[d].Equal(a.Since[d]) || got.Prev[d] != a.Prev[d] {
				t.Fatalf("device %s: read back %s since %s, prev %v; want %s since %s, prev %v", d, got.Owners[d], got.Since[d], got.Prev[d], p, a.Since[d], a.Prev[d])
			}
		}
	}
	if _, err := DecodeAssignment([]byte{0x1f, 0x8b, 0, 1}); err == nil {
		t.Error("a broken gzipped assignment decoded")
	}
}

// TestGroupReadsAnEarlierReleasesAssignment: a leader of an earlier
// release stores the assignment of a site of 50,000 devices whole, as one
// gzipped value, and a member of this release reads it, from the watch and
// from Current (an upgrade, the members first).
func TestGroupReadsAnEarlierReleasesAssignment(t *testing.T) {
	ts, _, js := runJS(t)
	ctx := testCtx(t)
	a := bigAssignment(50_000)
	b, err := EncodeAssignment(a)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, GroupBucket)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := kv.Create(ctx, GroupAssignmentKey("hq"), b)
	if err != nil {
		t.Fatalf("store an assignment of 50,000 devices (%d bytes): %v", len(b), err)
	}
	// The lease is another's (for good): the member only follows.
	if _, err := kv.Create(ctx, GroupLeaderKey("hq"), []byte(`{"name":"poller-2","instance":"i2"}`)); err != nil {
		t.Fatal(err)
	}
	_, mjs := connect(t, ts.srv.ClientURL())
	g, err := NewGroup(mjs, DefaultGroupConfig("poller-3", "i3", "hq"), nil)
	if err != nil {
		t.Fatal(err)
	}
	cur, err := g.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cur.Revision != rev || len(cur.Owners) != 50_000 || len(cur.Owned("poller-3")) != len(a.Owned("poller-3")) {
		t.Fatalf("Current: revision %d, %d owners, %d owned; want %d, 50000, %d", cur.Revision, len(cur.Owners), len(cur.Owned("poller-3")), rev, len(a.Owned("poller-3")))
	}
	gctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); g.Run(gctx) }()
	defer func() { cancel(); <-done }()
	select {
	case got := <-g.Assignments():
		if got.Revision < rev || len(got.Owners) != 50_000 {
			t.Fatalf("watched: revision %d, %d owners", got.Revision, len(got.Owners))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no assignment from the watch within 30 s")
	}
}
