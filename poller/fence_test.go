package poller

import (
	"context"
	"testing"
	"time"

	"github.com/meshmon/meshmon"
)

type stubGroup struct{ ch chan meshmon.Assignment }

func (g stubGroup) Assignments() <-chan meshmon.Assignment { return g.ch }

func (g stubGroup) Current(context.Context) (meshmon.Assignment, error) {
	return meshmon.Assignment{}, nil
}

func (g stubGroup) LastStates(context.Context, []string) (map[string]map[string]meshmon.LastState, error) {
	return nil, nil
}

// storeFirst is a publisher that stores the first n messages it is given.
type storeFirst struct {
	n   int
	got []meshmon.Message
}

func (s *storeFirst) PublishBatch(_ context.Context, msgs []meshmon.Message) (int, error) {
	k := min(s.n, len(msgs))
	s.got = append(s.got, msgs[:k]...)
	return k, nil
}

// observedMsg is a message of site lab observed at at.
func observedMsg(stream meshmon.Stream, device, kind string, at time.Time) meshmon.Message {
	m := meshmon.Message{Stream: stream, Site: "lab", Device: device, Kind: kind, Time: at, Data: []byte("{}")}
	m.ID = m.Subject() + at.String()
	return m
}

// TestFencedPublisher: a member that lost a device drops what it observed
// of it from the moment another member got it, keeps what it observed
// before, and keeps traps and its own devices' observations.
func TestFencedPublisher(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Name, cfg.Site = "p1", "lab"
	p, err := New(cfg, nil, nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.JoinGroup(stubGroup{})
	moved := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	p.gs.latest = meshmon.Assignment{
		Owners: map[string]string{"mine": "p1", "gone": "p2"},
		Since:  map[string]time.Time{"mine": moved.Add(-time.Hour), "gone": moved},
	}
	msgs := []meshmon.Message{
		observedMsg(meshmon.StreamMetrics, "gone", "system", moved.Add(time.Second)),   // 0: superseded
		observedMsg(meshmon.StreamMetrics, "mine", "system", moved.Add(time.Second)),   // 1
		observedMsg(meshmon.StreamMetrics, "gone", "system", moved.Add(-time.Second)),  // 2: before the move
		observedMsg(meshmon.StreamEvents, "gone", "trap", moved.Add(time.Second)),      // 3: a trap
		observedMsg(meshmon.StreamEvents, "gone", "if_down", moved.Add(time.Second)),   // 4: superseded
		observedMsg(meshmon.StreamEvents, "gone", "if_down", moved.Add(2*time.Second)), // 5: superseded
	}
	pub := &storeFirst{n: 100}
	f := &fencedPublisher{p: p, pub: pub}
	n, err := f.PublishBatch(context.Background(), msgs)
	if err != nil || n != len(msgs) || f.dropped != 3 {
		t.Fatalf("published %d of %d (dropped %d), %v; want all done, 3 dropped", n, len(msgs), f.dropped, err)
	}
	if len(pub.got) != 3 || pub.got[0].ID != msgs[1].ID || pub.got[1].ID != msgs[2].ID || pub.got[2].ID != msgs[3].ID {
		t.Fatalf("stored %v", pub.got)
	}
	if got := p.supersededN.Load(); got != 3 {
		t.Fatalf("Superseded = %d, want 3", got)
	}

	// The peer stores only the first kept message: what comes before the
	// second kept one is done, the rest stays spooled.
	pub = &storeFirst{n: 1}
	f = &fencedPublisher{p: p, pub: pub}
	if n, err := f.PublishBatch(context.Background(), msgs); err != nil || n != 2 || f.dropped != 1 {
		t.Fatalf("done %d (dropped %d), %v; want 2 done, 1 dropped", n, f.dropped, err)
	}
}

// TestSupersededWhileAway: a member cut off that gets its device back on
// its return drops what it observed while another member had it, and keeps
// what it observed before and since.
func TestSupersededWhileAway(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Name, cfg.Site = "p1", "lab"
	p, err := New(cfg, nil, nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.JoinGroup(stubGroup{})
	lost := time.Date(2026, 11, 22, 10, 0, 0, 500e6, time.UTC)
	back := lost.Add(time.Minute)
	p.gs.inventory["d1"] = &meshmon.Device{Name: "d1", Interval: meshmon.Duration(time.Second)}
	p.gs.latest = meshmon.Assignment{
		Owners: map[string]string{"d1": "p1"},
		Since:  map[string]time.Time{"d1": back},
		Prev:   map[string]meshmon.Spell{"d1": {Poller: "p2", Since: lost}},
	}
	for _, c := range []struct {
		at   time.Time
		want bool
	}{
		{lost.Add(-time.Second), false},     // before p2 had it
		{lost.Truncate(time.Second), true},  // p2 polled at once, in this slot
		{lost.Add(30 * time.Second), true},  // while p2 had it
		{back.Add(time.Millisecond), false}, // p1's again
		{back.Add(-time.Millisecond), true}, // still p2's
	} {
		if got := p.superseded(observedMsg(meshmon.StreamMetrics, "d1", "system", c.at)); got != c.want {
			t.Errorf("observed at %s: superseded %v, want %v", c.at.Format("15:04:05.000"), got, c.want)
		}
	}
}

// TestSupersededStaleRevision: a member that hung through its device's
// hand-over and its return drops the samples it took of the device since
// its return under an assignment made before the return (the revision no
// longer says who owned it), and keeps those under the assignment that
// gave the device back, and events.
func TestSupersededStaleRevision(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Name, cfg.Site = "p1", "lab"
	p, err := New(cfg, nil, nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.JoinGroup(stubGroup{})
	lost := time.Date(2026, 11, 22, 10, 0, 0, 500e6, time.UTC)
	back := lost.Add(time.Minute)
	p.gs.inventory["d1"] = &meshmon.Device{Name: "d1", Interval: meshmon.Duration(time.Second)}
	p.gs.remember(meshmon.Assignment{Revision: 3, Time: lost.Add(-time.Hour)})
	p.gs.latest = meshmon.Assignment{Revision: 9, Time: back,
		Owners: map[string]string{"d1": "p1"},
		Since:  map[string]time.Time{"d1": back},
		Prev:   map[string]meshmon.Spell{"d1": {Poller: "p2", Since: lost}},
	}
	p.gs.remember(p.gs.latest)
	for _, c := range []struct {
		stream meshmon.Stream
		rev    string
		want   bool
	}{
		{meshmon.StreamMetrics, `"assignment":3`, true},          // polled under the assignment it had before it hung
		{meshmon.StreamMetrics, `"assignment":5`, true},          // an assignment it never applied, older than the current one
		{meshmon.StreamMetrics, `"assignment":9`, false},         // under the assignment that gave it back
		{meshmon.StreamMetrics, `"time":"x"`, false},             // no revision
		{meshmon.StreamEvents, `"data":{"assignment":3}`, false}, // an event: its state change is committed
	} {
		m := observedMsg(c.stream, "d1", "if_down", back.Add(time.Second))
		m.Data = []byte("{" + c.rev + "}")
		if got := p.superseded(m); got != c.want {
			t.Errorf("%s: superseded %v, want %v", c.rev, got, c.want)
		}
	}
}
