package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/internal/eventually"
)

// publishStates stores, for each of n devices, a node.down then a
// node.up event and an if.down of interface 2, with a trap between them
// (traps are not read), at site hq; it returns the device names.
func publishStates(tb testing.TB, js jetstream.JetStream, n int) []string {
	tb.Helper()
	ctx := testCtx(tb)
	wait := func() {
		select {
		case <-js.PublishAsyncComplete():
		case <-ctx.Done():
			tb.Fatal("publishing the events took too long")
		}
	}
	var names []string
	for i := range n {
		if i%500 == 0 {
			wait()
		}
		d := fmt.Sprintf("dev%05d", i)
		names = append(names, d)
		for _, e := range []struct{ kind, check, state string }{
			{meshmon.KindNodeDown, "icmp", "down"}, {meshmon.KindTrap, "trap", ""}, {meshmon.KindNodeUp, "icmp", "up"}, {meshmon.KindIfDown, "if.2", "down"},
		} {
			b, _ := json.Marshal(meshmon.Event{Subject: d, Data: meshmon.EventData{Site: "hq", Device: d, Kind: e.kind, Check: e.check, State: e.state}})
			if _, err := js.PublishAsync(meshmon.EventSubject("hq", d, e.kind), b); err != nil {
				tb.Fatal(err)
			}
		}
	}
	wait()
	return names
}

// TestLastStatesOfManyDevices: LastStates reads the last state of every
// check of many devices at once (more than one consumer's worth), and
// leaves out devices the events say nothing of.
func TestLastStatesOfManyDevices(t *testing.T) {
	_, _, js := runJS(t)
	names := publishStates(t, js, 2*lastStatesChunk+10)
	g, err := NewGroup(js, DefaultGroupConfig("p1", "i1", "hq"), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := g.LastStates(testCtx(t), append(names, "silent"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(names) {
		t.Fatalf("states of %d devices, want %d", len(got), len(names))
	}
	for _, d := range names {
		if s := got[d]; len(s) != 2 || s["icmp"].State != "up" || s["if.2"].State != "down" {
			t.Fatalf("%s: %v, want icmp up and if.2 down", d, s)
		}
	}
	// Its consumers go once it is done.
	eventually.NoError(t, 10*time.Second, "the consumers of LastStates removed", func() error {
		s, err := js.Stream(testCtx(t), EventsStream)
		if err != nil {
			return err
		}
		if n := s.CachedInfo().State.Consumers; n != 0 {
			return fmt.Errorf("%d consumers left on %s", n, EventsStream)
		}
		return nil
	})
	ctx, cancel := context.WithCancel(testCtx(t))
	cancel()
	if _, err := g.LastStates(ctx, names); err == nil {
		t.Error("LastStates with a done context did not fail")
	}
}

// BenchmarkLastStates: the last states of 500 devices (a third of a site
// of 1,500) in one read, against one read per device as take-over did
// before (issue 23).
func BenchmarkLastStates(b *testing.B) {
	_, _, js := runJS(b)
	names := publishStates(b, js, 1500)[:500]
	g, err := NewGroup(js, DefaultGroupConfig("p1", "i1", "hq"), nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.Run("one-read", func(b *testing.B) {
		for b.Loop() {
			if got, err := g.LastStates(ctx, names); err != nil || len(got) != len(names) {
				b.Fatal(len(got), err)
			}
		}
	})
	b.Run("per-device", func(b *testing.B) {
		for b.Loop() {
			for _, d := range names {
				if _, err := g.LastStates(ctx, []string{d}); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}

// BenchmarkLastStatesChunk: the same one read with consumers of more or
// fewer devices each (the server checks a consumer's filter subjects
// against each other when it creates it).
func BenchmarkLastStatesChunk(b *testing.B) {
	_, _, js := runJS(b)
	names := publishStates(b, js, 1500)[:500]
	g, err := NewGroup(js, DefaultGroupConfig("p1", "i1", "hq"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer func(n int) { lastStatesChunk = n }(lastStatesChunk)
	for _, n := range []int{16, 64, 256, 500} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			lastStatesChunk = n
			for b.Loop() {
				if got, err := g.LastStates(context.Background(), names); err != nil || len(got) != len(names) {
					b.Fatal(len(got), err)
				}
			}
		})
	}
}

// TestLastStatesLaterKindWins: a check's state is that of the later of its
// kinds, whichever subject it is on (only each subject's last event is
// read), with that kind: up then down is down, down then up is up, a
// flapping after up is flapping, though another check's flapping came
// after it on the same subject, and a stable after a reboot flap is
// stable; of two interfaces down, one back up, each has its own state
// although they share the if_down and if_up subjects.
func TestLastStatesLaterKindWins(t *testing.T) {
	_, _, js := runJS(t)
	ctx := testCtx(t)
	for _, e := range []struct{ dev, kind, check, state string }{
		{"a", meshmon.KindNodeDown, "icmp", "down"}, {"a", meshmon.KindNodeUp, "icmp", "up"}, {"a", meshmon.KindNodeDown, "icmp", "down"},
		{"b", meshmon.KindNodeUp, "icmp", "up"}, {"b", meshmon.KindNodeDown, "icmp", "down"}, {"b", meshmon.KindNodeUp, "icmp", "up"},
		{"c", meshmon.KindNodeUp, "icmp", "up"}, {"c", meshmon.KindFlapping, "icmp", "up"},
		{"c", meshmon.KindFlapping, "uptime", "rebooting"}, {"c", meshmon.KindStable, "uptime", "stable"},
		{"d", meshmon.KindIfDown, "if.1", "down"}, {"d", meshmon.KindIfDown, "if.2", "down"}, {"d", meshmon.KindIfDown, "if.3", "down"},
		{"d", meshmon.KindIfUp, "if.1", "up"}, {"d", meshmon.KindIfUp, "if.3", "up"},
	} {
		b, _ := json.Marshal(meshmon.Event{Subject: e.dev, Data: meshmon.EventData{Site: "hq", Device: e.dev, Kind: e.kind, Check: e.check, State: e.state}})
		if _, err := js.Publish(ctx, meshmon.EventSubject("hq", e.dev, e.kind), b); err != nil {
			t.Fatal(err)
		}
	}
	g, err := NewGroup(js, DefaultGroupConfig("p1", "i1", "hq"), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := g.LastStates(ctx, []string{"a", "b", "c", "d"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]meshmon.LastState{
		"a": {"icmp": {Kind: meshmon.KindNodeDown, State: "down"}},
		"b": {"icmp": {Kind: meshmon.KindNodeUp, State: "up"}},
		"c": {"icmp": {Kind: meshmon.KindFlapping, State: "up"}, "uptime": {Kind: meshmon.KindStable, State: "stable"}},
		"d": {"if.1": {Kind: meshmon.KindIfUp, State: "up"}, "if.2": {Kind: meshmon.KindIfDown, State: "down"}, "if.3": {Kind: meshmon.KindIfUp, State: "up"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("last states %v, want %v", got, want)
	}
}

// TestLastStatesSiteWide: past lastStatesSiteWide devices LastStates reads
// the whole site's state events in one consumer and returns those of the
// devices asked for only, as the per-device read does.
func TestLastStatesSiteWide(t *testing.T) {
	_, _, js := runJS(t)
	names := publishStates(t, js, 120)
	defer func(n int) { lastStatesSiteWide = n }(lastStatesSiteWide)
	lastStatesSiteWide = 40
	g, err := NewGroup(js, DefaultGroupConfig("p1", "i1", "hq"), nil)
	if err != nil {
		t.Fatal(err)
	}
	asked := names[:100]
	got, err := g.LastStates(testCtx(t), append(asked, "silent"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(asked) {
		t.Fatalf("states of %d devices, want %d", len(got), len(asked))
	}
	for _, d := range asked {
		if s := got[d]; len(s) != 2 || s["icmp"].State != "up" || s["if.2"].State != "down" {
			t.Fatalf("%s: %v, want icmp up and if.2 down", d, s)
		}
	}
}
