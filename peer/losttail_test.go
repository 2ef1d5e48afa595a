package peer

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/alarm"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/bus/alarmbus"
	"github.com/meshmon/meshmon/internal/eventually"
)

// TestCentralFetchesItsLostTailAgain: a central that comes back without
// the last events it had stored and acknowledged (its store's tail lost,
// as a power cut without fsync would lose it) has its source watch find
// the gap: nats-server resumes a durable source from the site consumer's
// ack floor, past them. The watch fetches them again through the site's
// refetch consumer, each once, whether the site sent nothing new since or
// central stored newer events of the site first; then the site's own
// source carries on. A restart that lost nothing is left alone.
func TestCentralFetchesItsLostTailAgain(t *testing.T) {
	const first = 400
	for _, tc := range []struct {
		name  string
		cut   bool
		while int // events the site publishes while central is down
	}{
		{"quiet site", true, 0},
		{"busy site", true, 200},
		{"nothing lost", false, 200},
		{"nothing lost, quiet site", false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := centralWithSite(t, "paris")
			ccfg, central, cjs, pjs := m.ccfg, m.central, m.cjs, m.sjs
			publishSite(t, pjs, "paris", 0, first)
			waitCount(t, cjs, "paris", first, 20*time.Second)

			central.Close()
			if tc.cut {
				cutTail(t, ccfg.StoreDir(), bus.EventsStream)
			}
			publishSite(t, pjs, "paris", first, tc.while)
			logs := &logWatch{}
			central = startPeerLog(t, ccfg, logs)
			cjs = peerJS(t, central)
			// Read before the link is back (the site dials again after
			// its back-off): nothing new is in yet.
			held := recoveredEvents(t, cjs)
			t.Logf("central recovered %d of %d events", held, first)
			if tc.cut && held >= first {
				t.Fatalf("central recovered %d events after its tail was cut, want fewer than %d", held, first)
			}
			want := first + tc.while
			if !tc.cut {
				waitCount(t, cjs, "paris", uint64(want), 30*time.Second)
				// The check is made at the watch's look at the site's
				// consumer (every progressEvery): give it one.
				time.Sleep(progressEvery + time.Second) // a look that should not act, not synchronisation
				if lines := logs.matching("central lost events of a site"); len(lines) > 0 {
					t.Fatalf("central found a gap where there was none: %v", lines)
				}
				checkOnce(t, cjs, "paris", 0, want)
				return
			}
			checkRefetched(t, logs, cjs, pjs, held+1, first, want)
		})
	}
}

// TestCentralAfterARefetchLosesNothing: after a refetch of a busy site's
// lost tail, central's last event of the site came through the refetch
// (older than the newer ones stored before it); a restart of central
// before the site sends anything new is not taken for another lost tail.
func TestCentralAfterARefetchLosesNothing(t *testing.T) {
	const first, while = 400, 200
	m := centralWithSite(t, "paris")
	ccfg, central, cjs, pjs := m.ccfg, m.central, m.cjs, m.sjs
	publishSite(t, pjs, "paris", 0, first)
	waitCount(t, cjs, "paris", first, 20*time.Second)
	central.Close()
	cutTail(t, ccfg.StoreDir(), bus.EventsStream)
	publishSite(t, pjs, "paris", first, while)
	logs := &logWatch{}
	central = startPeerLog(t, ccfg, logs)
	cjs = peerJS(t, central)
	eventually.NoError(t, 30*time.Second, "central's log line", func() error {
		return logs.has("central fetched again the events of a site it had lost")
	})
	checkOnce(t, cjs, "paris", 0, first+while)

	central.Close()
	logs = &logWatch{}
	central = startPeerLog(t, ccfg, logs)
	cjs = peerJS(t, central)
	// The check is made at the watch's look at the site's consumer
	// (every progressEvery): give it two.
	time.Sleep(2*progressEvery + time.Second) // looks that should not act, not synchronisation
	if lines := logs.matching("central lost events of a site"); len(lines) > 0 {
		t.Fatalf("central found a gap where there was none: %v", lines)
	}
	checkOnce(t, cjs, "paris", 0, first+while)
}

// TestCentralFetchesItsLostTailAgainOperator is the busy site of
// TestCentralFetchesItsLostTailAgain in operator mode, where the watch
// acts in the tenant's account over a connection of its own, and the
// reset, the refetch consumer's deliveries and central's flow control
// cross the site's leaf link under the leaf user's permissions.
func TestCentralFetchesItsLostTailAgainOperator(t *testing.T) {
	const first, while = 400, 200
	ctx := t.Context()
	o := newOperatorSite(t, ctx)
	cfg := o.members[0]
	cfg.Name = "paris-1"
	pjs := o.publisher(startPeer(t, cfg))
	publishSite(t, pjs, "paris", 0, first)
	waitCount(t, o.cjs, "paris", first, 20*time.Second)

	o.central.Close()
	cutTail(t, o.ccfg.StoreDir(), bus.EventsStream)
	publishSite(t, pjs, "paris", first, while)
	logs := &logWatch{}
	cjs := o.adminJS(startPeerLog(t, o.ccfg, logs))
	held := recoveredEvents(t, cjs)
	if held >= first {
		t.Fatalf("central recovered %d events after its tail was cut, want fewer than %d", held, first)
	}
	t.Logf("central recovered %d of %d events", held, first)
	checkRefetched(t, logs, cjs, pjs, held+1, first, first+while)
}

// checkRefetched waits for central (cjs, its log in logs) to fetch again
// the events of paris it lost, from..to (the sequences of the site's
// stream), and fails unless it then holds each of the want events the site
// published exactly once, sources the site through its own consumer
// again, and stores what the site (pjs) publishes next.
func checkRefetched(t *testing.T, logs *logWatch, cjs, pjs jetstream.JetStream, from uint64, to, want int) {
	t.Helper()
	eventually.NoError(t, 30*time.Second, "central's log line", func() error {
		return logs.has("central fetched again the events of a site it had lost")
	})
	t.Log(logs.matching("central lost events of a site"))
	if err := logs.has(fmt.Sprintf("lost_from=%d lost_to=%d", from, to)); err != nil {
		t.Fatalf("the gap named is not the one cut: %v", err)
	}
	checkOnce(t, cjs, "paris", 0, want)
	eventually.NoError(t, 30*time.Second, "the site's source through its own consumer", func() error {
		s, err := cjs.Stream(testCtx(t), bus.EventsStream)
		if err != nil {
			return err
		}
		for _, src := range s.CachedInfo().Config.Sources {
			if src.Consumer == nil || src.Consumer.Name != bus.SourceConsumer(bus.EventsStream) {
				return fmt.Errorf("central sources %s through %+v", src.Name, src.Consumer)
			}
		}
		return nil
	})
	publishSite(t, pjs, "paris", want, 100)
	waitCount(t, cjs, "paris", uint64(want+100), 30*time.Second)
	checkOnce(t, cjs, "paris", 0, want+100)
	if lines := logs.matching("fetching them again failed"); len(lines) > 0 {
		t.Fatal(lines)
	}
}

// cutTail truncates the last message block of stream in a stopped peer's
// store to a third of its size and removes the stream's saved state, so
// the server rebuilds it from what is left, as after a power cut that
// took the writes not yet synced.
func cutTail(t *testing.T, storeDir, stream string) {
	t.Helper()
	var blocks []string
	err := filepath.WalkDir(storeDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if filepath.Base(filepath.Dir(filepath.Dir(path))) == stream && filepath.Base(filepath.Dir(path)) == "msgs" {
			switch {
			case filepath.Ext(path) == ".blk":
				blocks = append(blocks, path)
			case filepath.Base(path) == "index.db":
				return os.Remove(path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) == 0 {
		t.Fatalf("no message block of %s under %s", stream, storeDir)
	}
	slices.Sort(blocks) // one block here; the last by name otherwise
	last := blocks[len(blocks)-1]
	st, err := os.Stat(last)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(last, st.Size()/3); err != nil {
		t.Fatal(err)
	}
}

// recoveredEvents is how many events central's EVENTS holds.
func recoveredEvents(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	s, err := js.Stream(testCtx(t), bus.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().State.Msgs
}

// checkOnce reads central's EVENTS and fails unless it holds each of
// site's events from first to first+n-1 exactly once, and no other.
func checkOnce(t *testing.T, js jetstream.JetStream, site string, first, n int) {
	t.Helper()
	ctx := testCtx(t)
	c, err := js.OrderedConsumer(ctx, bus.EventsStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for range n {
		msg, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("read central's events: %v (after %d)", err, len(seen))
		}
		seen[msg.Headers().Get(jetstream.MsgIDHeader)]++
	}
	if _, err := c.Next(jetstream.FetchMaxWait(200 * time.Millisecond)); err == nil {
		t.Fatalf("central holds more than the %d events of %s", n, site)
	}
	for i := first; i < first+n; i++ {
		if id := fmt.Sprintf("%s-%d", site, i); seen[id] != 1 {
			t.Fatalf("central holds %s %d times, want once", id, seen[id])
		}
	}
}

// TestAlarmsAfterCentralLostItsTail: central's alarm processor had applied
// the last events of EVENTS (ten devices down) when central lost them; the
// site then sent five of them up and five others down. The stream numbers
// what it stores next from where it lost them, below the processor's
// checkpoint: the processor reads on from there, applies the new events,
// and skips the lost ones when the source watch fetches them again, so a
// device that came back is not taken down again by its older event.
func TestAlarmsAfterCentralLostItsTail(t *testing.T) {
	const filler = 390 // events that change no alarm
	m := centralWithSite(t, "paris")
	ccfg, central, cjs, pjs := m.ccfg, m.central, m.cjs, m.sjs
	down := []string{"a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "a9"}
	newDown := []string{"b0", "b1", "b2", "b3", "b4"}
	publishSite(t, pjs, "paris", 0, filler)
	publishStateEvents(t, pjs, "paris", meshmon.KindNodeDown, "", down...)
	waitCount(t, cjs, "paris", filler+uint64(len(down)), 20*time.Second)
	waitAlarms(t, cjs, down, nil)
	eventually.NoError(t, 30*time.Second, "the processor's checkpoint at the stream's end", func() error {
		return processorAt(t, cjs, filler+uint64(len(down)))
	})

	central.Close()
	cutTail(t, ccfg.StoreDir(), bus.EventsStream)
	publishStateEvents(t, pjs, "paris", meshmon.KindNodeUp, "", down[:5]...)
	publishStateEvents(t, pjs, "paris", meshmon.KindNodeDown, "", newDown...)
	logs := &logWatch{}
	central = startPeerLog(t, ccfg, logs)
	cjs = peerJS(t, central)
	if held := recoveredEvents(t, cjs); held > filler {
		t.Fatalf("central recovered %d events after its tail was cut, want at most %d (the down events lost)", held, filler)
	}
	eventually.NoError(t, 30*time.Second, "central's log line", func() error {
		return logs.has("central fetched again the events of a site it had lost")
	})
	total := uint64(filler + len(down) + 5 + len(newDown))
	waitCount(t, cjs, "paris", total, 30*time.Second)
	eventually.NoError(t, 30*time.Second, "the processor's checkpoint at the stream's end", func() error {
		return processorAt(t, cjs, total)
	})
	waitAlarms(t, cjs, slices.Concat(down[5:], newDown), down[:5])
	// Each alarm's changes once each: the lost down events were not
	// applied again.
	s, err := cjs.Stream(testCtx(t), alarm.Stream)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string][]string{}
	for seq := uint64(1); seq <= s.CachedInfo().State.LastSeq; seq++ {
		msg, err := s.GetMsg(testCtx(t), seq)
		if err != nil {
			t.Fatal(err)
		}
		var c alarm.Change
		if err := json.Unmarshal(msg.Data, &c); err != nil {
			t.Fatal(err)
		}
		seen[c.Alarm.Device] = append(seen[c.Alarm.Device], c.What)
	}
	for _, d := range down[:5] {
		if got := seen[d]; !slices.Equal(got, []string{alarm.WhatOpened, alarm.WhatCleared}) {
			t.Errorf("%s: changes %v, want opened, cleared", d, got)
		}
	}
	for _, d := range slices.Concat(down[5:], newDown) {
		if got := seen[d]; !slices.Equal(got, []string{alarm.WhatOpened}) {
			t.Errorf("%s: changes %v, want opened", d, got)
		}
	}
	if err := logs.has("central's EVENTS lost events the processor had applied"); err != nil {
		t.Fatal(err)
	}
}

// waitAlarms waits until central's alarms of the devices open are open
// and of those cleared cleared.
func waitAlarms(t *testing.T, js jetstream.JetStream, open, cleared []string) {
	t.Helper()
	eventually.NoError(t, 30*time.Second, "the alarms", func() error {
		as, err := alarmbus.List(testCtx(t), js)
		if err != nil {
			return err
		}
		state := map[string]string{}
		for _, a := range as {
			state[a.Device] = a.State
		}
		for _, d := range open {
			if state[d] != alarm.StateOpen {
				return fmt.Errorf("%s is %q, want open", d, state[d])
			}
		}
		for _, d := range cleared {
			if state[d] != alarm.StateCleared {
				return fmt.Errorf("%s is %q, want cleared", d, state[d])
			}
		}
		return nil
	})
}

// processorAt says whether the alarm processor's checkpoint is at seq.
func processorAt(t *testing.T, js jetstream.JetStream, seq uint64) error {
	kv, err := js.KeyValue(testCtx(t), alarmbus.ProcessorBucket)
	if err != nil {
		return err
	}
	e, err := kv.Get(testCtx(t), alarmbus.AppliedKey)
	if err != nil {
		return err
	}
	var c struct {
		Applied uint64 `json:"applied"`
	}
	if err := json.Unmarshal(e.Value(), &c); err != nil {
		// An earlier release's: the sequence alone.
		if err := json.Unmarshal(e.Value(), &c.Applied); err != nil {
			return err
		}
	}
	if c.Applied != seq {
		return fmt.Errorf("checkpoint at %d, want %d", c.Applied, seq)
	}
	return nil
}
