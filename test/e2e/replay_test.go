//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/eventually"
)

// testReplayDuringCentralRestart: `meshmon events tail --since 1h
// --no-follow`, run through each central peer just after the central peer
// that led EVENTS was SIGKILLed and restarted (with events stored while it
// was down), and while EVENTS's leader moves, prints every event central
// held, or exits 1 with a line on stderr; never fewer with exit 0. Then
// `status` at central succeeds through the same leader moves.
func testReplayDuringCentralRestart(t *testing.T) {
	m := newMesh(t)
	publish := func(first, n int) {
		t.Helper()
		msgs := make([]meshmon.Message, n)
		for i := range msgs {
			msgs[i] = meshmon.Message{Stream: meshmon.StreamEvents, Site: "wan", Device: fmt.Sprintf("d%d", i%4), Kind: meshmon.KindTrap,
				ID: fmt.Sprintf("replay-%d", first+i), Data: []byte(`{"data":{"kind":"trap"}}`)}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if got, err := bus.NewPublisher(m.sjs).PublishBatch(ctx, msgs); err != nil || got != n {
			t.Fatalf("publish at the site: %d of %d, %v", got, n, err)
		}
	}
	const before, during = 200, 2000
	publish(0, before)
	m.waitCaughtUp(time.Minute)

	// The central peer that leads EVENTS is SIGKILLed; the site's events
	// of meanwhile reach the other two; it is restarted.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s, err := m.cjs.Stream(ctx, "EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	var leader *meshPeer
	for _, c := range m.central {
		if c.name == s.CachedInfo().Cluster.Leader {
			leader = c
		}
	}
	if leader == nil {
		t.Fatalf("no central peer leads EVENTS (%+v)", s.CachedInfo().Cluster)
	}
	leader.proc.kill()
	publish(before, during)
	total := uint64(before + during)
	eventually.True(t, 2*time.Minute, "the other central peers to hold every event", func() bool {
		n, err := eventCount(m.cjs, "ev.wan.>")
		return err == nil && n == total
	})
	leader.start(t)

	replay := func(c *meshPeer) (complete bool) {
		t.Helper()
		out, stderr, code := run(t, "--server", c.url(), "--user", meshUser, "--password", meshPassword, "--timeout", "20s",
			"events", "tail", "--since", "1h", "--no-follow", "--json")
		n := len(lines(out))
		switch {
		case code == 0 && uint64(n) != total:
			t.Fatalf("replay through %s: %d events of %d, exit 0, stderr %q", c.name, n, total, stderr)
		case code != 0 && len(lines(stderr)) != 1:
			t.Fatalf("replay through %s: exit %d with %d lines on stderr: %q", c.name, code, len(lines(stderr)), stderr)
		case code != 0:
			t.Logf("replay through %s failed: %s", c.name, strings.TrimSpace(stderr))
		}
		return code == 0
	}
	complete, failed := 0, 0
	count := func(ok bool) {
		if ok {
			complete++
		} else {
			failed++
		}
	}
	// Right after the restart, until the restarted peer is current.
	restarted := time.Now()
	for time.Since(restarted) < 20*time.Second {
		for _, c := range m.central {
			count(replay(c))
		}
	}
	// While EVENTS's leader moves.
	for i := range 6 {
		if _, err := m.cnc.Request("$JS.API.STREAM.LEADER.STEPDOWN.EVENTS", nil, 5*time.Second); err != nil {
			t.Logf("step down %d: %v", i, err)
		}
		for _, c := range m.central {
			count(replay(c))
			if _, stderr, code := run(t, "--server", c.url(), "--user", meshUser, "--password", meshPassword, "--timeout", "20s", "status", "--json"); code != 0 {
				t.Fatalf("status through %s during leader moves: exit %d: %s", c.name, code, stderr)
			}
		}
	}
	t.Logf("%d replays complete, %d failed with an error", complete, failed)
	if complete == 0 {
		t.Fatal("no replay completed")
	}
}
