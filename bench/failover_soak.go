package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
)

// failoverSoak is what a soak saw.
type failoverSoak struct {
	For         string `json:"for"`
	Assignments int    `json:"assignments"`
	Short       int    `json:"assignments_without_every_member"`
	Moved       int    `json:"moved_from_a_live_poller"`
	Lags        string `json:"heartbeats"`
}

// soak watches a settled group of live members for d without killing any:
// every device the assignment moves meanwhile moved away from a live
// poller (a false failover). It also records how far each member's
// heartbeats fell behind the newest of the others, as the peer stamped
// them: the leader takes a member for dead only when both that and the
// time since its last heartbeat pass the member timeout, so the largest
// lag seen is the shortest member timeout that would have moved nothing.
func (fs *failoverSite) soak(ctx context.Context, d time.Duration, members []string, a meshmon.Assignment) (failoverSoak, error) {
	kv, err := fs.js.KeyValue(ctx, bus.PollersBucket)
	if err != nil {
		return failoverSoak{}, err
	}
	gkv, err := fs.js.KeyValue(ctx, bus.GroupBucket)
	if err != nil {
		return failoverSoak{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	hw, err := kv.Watch(ctx, bus.PollerKey(failoverSiteName, "")+"*", jetstream.UpdatesOnly())
	if err != nil {
		return failoverSoak{}, err
	}
	aw, err := gkv.Watch(ctx, bus.GroupAssignmentKey(failoverSiteName), jetstream.UpdatesOnly())
	if err != nil {
		return failoverSoak{}, err
	}
	s := &soakStats{last: map[string]time.Time{}, prev: a}
	var wg sync.WaitGroup
	wg.Go(func() { s.heartbeats(ctx, hw) })
	wg.Go(func() { s.assignments(ctx, fs, aw, members) })
	defer wg.Wait()
	start := time.Now()
	report := time.NewTicker(time.Minute)
	defer report.Stop()
	for {
		select {
		case <-ctx.Done():
			s.mu.Lock()
			res := failoverSoak{For: time.Since(start).Round(time.Second).String(), Assignments: s.count, Short: s.short, Moved: s.moved}
			s.mu.Unlock()
			res.Lags = s.lags()
			fs.out("SOAK %s devices %d pollers %d: assignments %d (%d without every member), devices moved from a live poller %d; %s\n",
				res.For, len(a.Owners), len(members), res.Assignments, res.Short, res.Moved, res.Lags)
			return res, nil
		case <-report.C:
			s.mu.Lock()
			n, moved := s.count, s.moved
			s.mu.Unlock()
			fs.out("%s soak %s: assignments %d, moved from a live poller %d; %s; load %s\n", time.Now().UTC().Format("15:04:05"),
				time.Since(start).Round(time.Second), n, moved, s.lags(), loadAverage())
		}
	}
}

// loadAverage is the machine's load average over 1, 5 and 15 minutes, or
// "?" where /proc/loadavg cannot be read.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "?"
}

// soakStats is what soak saw.
type soakStats struct {
	mu    sync.Mutex
	last  map[string]time.Time // member -> its last heartbeat's stamp
	gap   time.Duration        // the longest time between two heartbeats of a member
	lag   time.Duration        // the furthest a member's last heartbeat fell behind another's
	lagOf string
	gaps  []time.Duration // every gap between two heartbeats of a member
	prev  meshmon.Assignment
	count int // assignments
	short int // of them without every member
	moved int
}

// heartbeats records the members' heartbeats until ctx ends.
func (s *soakStats) heartbeats(ctx context.Context, w jetstream.KeyWatcher) {
	defer func() { _ = w.Stop() }()
	for e := range watched(ctx, w) {
		if e.Operation() != jetstream.KeyValuePut {
			continue
		}
		name := strings.TrimPrefix(e.Key(), bus.PollerKey(failoverSiteName, ""))
		at := e.Created()
		s.mu.Lock()
		if prev, ok := s.last[name]; ok {
			g := at.Sub(prev)
			s.gaps = append(s.gaps, g)
			s.gap = max(s.gap, g)
		}
		for m, t := range s.last {
			if m != name && at.Sub(t) > s.lag {
				s.lag, s.lagOf = at.Sub(t), m
			}
		}
		s.last[name] = at
		s.mu.Unlock()
	}
}

// assignments counts each new assignment and the devices it moved from
// the one before; every member is alive, so each move is a false
// failover.
func (s *soakStats) assignments(ctx context.Context, fs *failoverSite, w jetstream.KeyWatcher, members []string) {
	defer func() { _ = w.Stop() }()
	all := slices.Sorted(slices.Values(members))
	for e := range watched(ctx, w) {
		if e.Operation() != jetstream.KeyValuePut {
			continue
		}
		var idx struct {
			Members []string `json:"members"`
		}
		_ = json.Unmarshal(e.Value(), &idx)
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		a, _, err := fs.assignment(rctx)
		cancel()
		s.mu.Lock()
		s.count++
		if !slices.Equal(idx.Members, all) {
			s.short++
		}
		n := -1
		if err == nil && a.Revision > s.prev.Revision {
			n = meshmon.Moved(s.prev, a)
			s.moved += n
			s.prev = a
		}
		s.mu.Unlock()
		fs.out("%s soak: assignment %d (members %v of %v) moved %d devices (-1: not read: %v)\n", time.Now().UTC().Format("15:04:05"), e.Revision(), idx.Members, all, n, err)
	}
}

// lags says the longest gap between two heartbeats of a member, its
// percentiles, and the furthest a member fell behind the others.
func (s *soakStats) lags() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := slices.Clone(s.gaps)
	slices.Sort(g)
	return fmt.Sprintf("heartbeat gaps p50 %s p99 %s p99.9 %s max %s (%d), furthest behind another member %s (%s)", pct(g, 50), pct999(g, 990), pct999(g, 999),
		s.gap.Round(time.Millisecond), len(g), s.lag.Round(time.Millisecond), s.lagOf)
}

// pct999 is the p-th permille of sorted ts.
func pct999(ts []time.Duration, p int) string {
	if len(ts) == 0 {
		return "-"
	}
	return ts[min(len(ts)-1, len(ts)*p/1000)].Round(time.Millisecond).String()
}
