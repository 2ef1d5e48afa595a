package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/bus"
)

// groupEvent is one change of the group's lease or assignment as it
// reached the benchmark: who holds the lease ("" when it lapsed), or the
// members of an assignment.
type groupEvent struct {
	at      time.Time
	rev     uint64
	lease   bool
	holder  string
	members []string
}

// watchGroup records each change of the lease and the assignment's index
// until ctx ends; s.watches waits for its goroutines.
func (s *failoverSite) watchGroup(ctx context.Context) error {
	kv, err := s.js.KeyValue(ctx, bus.GroupBucket)
	if err != nil {
		return err
	}
	for _, key := range []string{bus.GroupLeaderKey(failoverSiteName), bus.GroupAssignmentKey(failoverSiteName)} {
		w, err := kv.Watch(ctx, key, jetstream.UpdatesOnly())
		if err != nil {
			return err
		}
		s.watches.Go(func() {
			defer func() { _ = w.Stop() }()
			for e := range watched(ctx, w) {
				s.recordGroup(e)
			}
		})
	}
	return nil
}

// watched yields what w delivers until ctx ends or w stops.
func watched(ctx context.Context, w jetstream.KeyWatcher) iter.Seq[jetstream.KeyValueEntry] {
	return func(yield func(jetstream.KeyValueEntry) bool) {
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e != nil && !yield(e) {
					return
				}
			}
		}
	}
}

func (s *failoverSite) recordGroup(e jetstream.KeyValueEntry) {
	ev := groupEvent{at: time.Now(), rev: e.Revision(), lease: e.Key() == bus.GroupLeaderKey(failoverSiteName)}
	var v struct {
		Name    string   `json:"name"`
		Members []string `json:"members"`
	}
	if e.Operation() == jetstream.KeyValuePut && json.Unmarshal(e.Value(), &v) == nil {
		ev.holder, ev.members = v.Name, v.Members
	}
	s.smu.Lock()
	s.group = append(s.group, ev)
	s.smu.Unlock()
}

// handover is the revision of the first assignment without dead after
// killed, and when it reached the benchmark (0 if none came).
func (s *failoverSite) handover(killed time.Time, dead string) (uint64, time.Time) {
	s.smu.Lock()
	defer s.smu.Unlock()
	for _, e := range s.group {
		if !e.lease && e.at.After(killed) && e.members != nil && !slices.Contains(e.members, dead) {
			return e.rev, e.at
		}
	}
	return 0, time.Time{}
}

// stale counts the samples that dead published after it resumed, observed
// after the hand-over (at) under an older assignment than rev: polled
// under the assignment it had before it hung. (What it observed before the
// hand-over is its to publish.) late counts all it published under an
// older assignment.
func (s *failoverSite) stale(dead string, rev uint64, at time.Time) (stale, late int) {
	s.smu.Lock()
	defer s.smu.Unlock()
	for _, x := range s.samples {
		if x.poller == dead && x.rev < rev {
			late++
			if x.observed.After(at) {
				stale++
			}
		}
	}
	return stale, late
}

// phases says when, after the kill at killed, the lease lapsed and passed
// to another member, and when the first assignment without dead came.
// When dead did not lead (leader did), the lease neither lapses nor
// passes on ("-").
func (s *failoverSite) phases(killed time.Time, dead, leader string) string {
	s.smu.Lock()
	defer s.smu.Unlock()
	var lapsed, won, assigned time.Duration
	held := leader // the lease's holder at the kill: its renewals are not a win
	for _, e := range s.group {
		d := e.at.Sub(killed)
		switch {
		case d < 0:
			if e.lease {
				held = e.holder
			}
		case e.lease && e.holder == "" && lapsed == 0:
			lapsed = d
		case e.lease && e.holder != "" && e.holder != dead && e.holder != held && won == 0:
			won = d
		case !e.lease && e.members != nil && !slices.Contains(e.members, dead) && assigned == 0:
			assigned = d
		}
	}
	return fmt.Sprintf("lease lapsed %s, won %s, assignment %s", since(lapsed), since(won), since(assigned))
}

// since is d for a phase line, "-" when the phase was not seen.
func since(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return d.Round(10 * time.Millisecond).String()
}

// survivorPhases reads from the logs of the members other than dead when,
// after killed, each got the first assignment without dead and how long
// it took to read the last states of the devices it gained and to take
// them over: the share of the failover on the survivors' side.
func (s *failoverSite) survivorPhases(members []string, dead string, killed time.Time) string {
	var parts []string
	for _, m := range members {
		if m == dead {
			continue
		}
		assigned, took, read := s.logPhase(m, killed, len(members)-1)
		parts = append(parts, fmt.Sprintf("%s: assignment %s, states read %s, taken over %s", m, since(assigned), read, since(took)))
	}
	return strings.Join(parts, "; ")
}

// logPhase finds, in member's log, the first assignment of n members
// after killed and the first take-over after that.
func (s *failoverSite) logPhase(member string, killed time.Time, n int) (assigned, took time.Duration, read string) {
	read = "-"
	f, err := os.Open(filepath.Join(s.dir, member+".log"))
	if err != nil {
		return 0, 0, read
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		ts, ok := strings.CutPrefix(line, "time=")
		if !ok || len(ts) < 24 {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, strings.Fields(ts)[0])
		if err != nil || at.Before(killed) {
			continue
		}
		switch {
		case assigned == 0 && strings.Contains(line, " msg=assignment ") && strings.HasSuffix(line, fmt.Sprintf(" members=%d", n)):
			assigned = at.Sub(killed)
		case assigned != 0 && strings.Contains(line, `msg="took devices over"`):
			took = at.Sub(killed)
			for _, f := range strings.Fields(line) {
				if v, ok := strings.CutPrefix(f, "read="); ok {
					read = v
				}
			}
			return assigned, took, read
		}
	}
	return assigned, took, read
}
