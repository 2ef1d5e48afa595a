package main

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

// soak watches a settled group of live members for d without killing any:
// every device the assignment moves meanwhile moved away from a live
// poller (a false failover). It also records how far each member's
// heartbeats fell behind the newest of the others, as the peer stamped
// them: the leader takes a member for dead only when both that and the
// time since its last heartbeat pass the member timeout, so the largest
// lag seen is the shortest member timeout that would have moved nothing.
func (b *bench) soak(ctx context.Context, d time.Duration, members []string, a meshmon.Assignment) error {
	kv, err := b.js.KeyValue(ctx, bus.PollersBucket)
	if err != nil {
		return err
	}
	hw, err := kv.Watch(ctx, bus.PollerKey(site, "")+"*", jetstream.UpdatesOnly())
	if err != nil {
		return err
	}
	defer hw.Stop()
	gkv, err := b.js.KeyValue(ctx, bus.GroupBucket)
	if err != nil {
		return err
	}
	aw, err := gkv.Watch(ctx, bus.GroupAssignmentKey(site), jetstream.UpdatesOnly())
	if err != nil {
		return err
	}
	defer aw.Stop()
	s := &soakStats{last: map[string]time.Time{}, prev: a}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	go s.heartbeats(hw)
	go s.assignments(ctx, b, aw, members)
	start := time.Now()
	report := time.NewTicker(time.Minute)
	defer report.Stop()
	for {
		select {
		case <-ctx.Done():
			s.mu.Lock()
			n, moved, short := s.count, s.moved, s.short
			s.mu.Unlock()
			fmt.Printf("SOAK %s devices %d pollers %d: assignments %d (%d without every member), devices moved from a live poller %d; %s\n",
				time.Since(start).Round(time.Second), len(a.Owners), len(members), n, short, moved, s.lags())
			return nil
		case <-report.C:
			load, _ := os.ReadFile("/proc/loadavg")
			s.mu.Lock()
			n, moved := s.count, s.moved
			s.mu.Unlock()
			fmt.Printf("%s soak %s: assignments %d, moved from a live poller %d; %s; load %s\n", time.Now().UTC().Format("15:04:05"),
				time.Since(start).Round(time.Second), n, moved, s.lags(), strings.Join(strings.Fields(string(load))[:3], " "))
		}
	}
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

// heartbeats records the members' heartbeats until the watch stops.
func (s *soakStats) heartbeats(w jetstream.KeyWatcher) {
	for e := range w.Updates() {
		if e == nil || e.Operation() != jetstream.KeyValuePut {
			continue
		}
		name := strings.TrimPrefix(e.Key(), bus.PollerKey(site, ""))
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
func (s *soakStats) assignments(ctx context.Context, b *bench, w jetstream.KeyWatcher, members []string) {
	all := slices.Clone(members)
	slices.Sort(all)
	for e := range w.Updates() {
		if e == nil || e.Operation() != jetstream.KeyValuePut {
			continue
		}
		var idx struct {
			Members []string `json:"members"`
		}
		_ = json.Unmarshal(e.Value(), &idx)
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		a, _, err := b.assignment(rctx)
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
		fmt.Printf("%s soak: assignment %d (members %v of %v) moved %d devices (-1: not read: %v)\n", time.Now().UTC().Format("15:04:05"), e.Revision(), idx.Members, all, n, err)
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
