package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/meshmon/meshmon"
)

// simPerProcess is the most devices one simulator process takes by
// default: it holds a socket a device, and the open-files hard limit is
// often 20,000.
const simPerProcess = 15_000

// failoverResult is what one size of 'meshmon bench failover' measured.
type failoverResult struct {
	Devices  int    `json:"devices"`
	Interval string `json:"interval"`
	Pollers  int    `json:"pollers"`
	Sims     int    `json:"sims"`
	Signal   string `json:"signal"`
	Victim   string `json:"victim"`
	Kills    int    `json:"kills"`
	// Owned is the victims' devices over every kill, Moved the devices
	// their leaves moved: equal when a leave moves the leaver's devices
	// and no other.
	Owned int `json:"owned"`
	Moved int `json:"moved"`
	failoverTimes
	// RejoinMoved is the devices each return of a victim moved, against
	// FairShare (devices / pollers).
	RejoinMoved []int          `json:"rejoin_moved"`
	FairShare   float64        `json:"fair_share"`
	Duplicates  int            `json:"duplicates"`
	PerKill     []failoverKill `json:"per_kill,omitempty"`
	Soak        *failoverSoak  `json:"soak,omitempty"`
	Load        string         `json:"load"` // the load average before and after
}

// Failover measures a poller group's failover with real processes, at
// each size in turn: a site peer, simulators ('meshmon sim
// --add-devices') and a group of 'meshmon poller run', all Meshmon's.
// It kills the leader (or another member) again and again, and takes the
// time from the kill to each of its devices' first sample from a
// survivor as the samples reach the benchmark on mx.<site>.>; then it
// brings the victim back and counts the devices its return moved and the
// devices polled by more than one poller once the group settled.
func Failover(ctx context.Context, bc FailoverConfig) error {
	if err := bc.validate(); err != nil {
		return err
	}
	if bc.Meshmon == "" {
		var err error
		if bc.Meshmon, err = os.Executable(); err != nil {
			return err
		}
	}
	out := bc.stdout()
	if bc.JSON {
		out = bc.stderr()
	}
	var results []failoverResult
	for _, size := range bc.Sizes {
		res, err := failoverSize(ctx, bc, size, out)
		if err != nil {
			return fmt.Errorf("%d devices (interval %s): %w", size.Devices, size.Interval, err)
		}
		results = append(results, res)
	}
	if bc.JSON {
		return printJSON(bc.stdout(), results)
	}
	return printFailover(bc.stdout(), results)
}

func (bc FailoverConfig) validate() error {
	if len(bc.Sizes) == 0 {
		return fmt.Errorf("--devices: give at least one size")
	}
	for _, size := range bc.Sizes {
		if size.Devices < 1 {
			return fmt.Errorf("--devices %d: each size must be at least 1 device", size.Devices)
		}
		if size.Interval < time.Second {
			return fmt.Errorf("--interval %s: each interval must be at least 1s", size.Interval)
		}
	}
	switch {
	case bc.Pollers < 2 || bc.Pollers > 20:
		return fmt.Errorf("--pollers %d: use 2 to 20", bc.Pollers)
	case bc.Kills < 1 && bc.Soak == 0:
		return fmt.Errorf("--kills %d: use at least 1 (or --soak)", bc.Kills)
	case failoverSignals[bc.Signal] == 0:
		return fmt.Errorf("--signal %q: use %s", bc.Signal, failoverSignalNames)
	case bc.Victim != "leader" && bc.Victim != "member":
		return fmt.Errorf("--victim %q: use leader or member", bc.Victim)
	case bc.Sims < 0:
		return fmt.Errorf("--sims %d: use 1 or more, or 0 for one simulator per %d devices", bc.Sims, simPerProcess)
	case bc.Soak < 0:
		return fmt.Errorf("--soak %s: use a positive duration, or 0 to kill", bc.Soak)
	}
	return nil
}

// failoverSize runs one size: its processes in a directory of their own,
// which stays (and is printed) with Keep or after an error.
func failoverSize(ctx context.Context, bc FailoverConfig, size FailoverSize, out io.Writer) (res failoverResult, err error) {
	dir, err := os.MkdirTemp("", "meshmon-bench-failover-")
	if err != nil {
		return res, err
	}
	s := &failoverSite{bc: bc, dir: dir, sig: failoverSignals[bc.Signal], proc: map[string]*failoverProc{},
		out: func(format string, a ...any) { fmt.Fprintf(out, format, a...) }}
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		s.watches.Wait()
		s.stopAll()
		if s.nc != nil {
			s.nc.Close()
		}
		if bc.Keep || err != nil {
			fmt.Fprintln(out, "logs in", dir)
		} else {
			os.RemoveAll(dir)
		}
	}()
	sims := bc.Sims
	if sims == 0 {
		sims = (size.Devices + simPerProcess - 1) / simPerProcess
	}
	sims = min(sims, size.Devices)
	res = failoverResult{Devices: size.Devices, Interval: size.Interval.String(), Pollers: bc.Pollers, Sims: sims, Signal: bc.Signal,
		Victim: bc.Victim, FairShare: float64(size.Devices) / float64(bc.Pollers)}
	load := loadAverage()
	members, a, leader, err := s.startGroup(ctx, size, sims)
	if err != nil {
		return res, err
	}
	s.out("site %s: %d devices (interval %s), %d pollers, %d simulators, leader %s; load %s\n",
		failoverSiteName, size.Devices, size.Interval, bc.Pollers, sims, leader, load)
	if bc.Soak > 0 {
		soak, err := s.soak(ctx, bc.Soak, members, a)
		res.Soak, res.Load = &soak, load+" → "+loadAverage()
		return res, err
	}
	for k := range bc.Kills {
		var kr failoverKill
		if kr, a, leader, err = s.killOne(ctx, k, size, members, a, leader); err != nil {
			return res, err
		}
		res.PerKill = append(res.PerKill, kr)
	}
	res.sum()
	res.Load = load + " → " + loadAverage()
	s.out("RESULT %s devices %d interval %s kills %d (%s) moved %d (the victims had %d): p50 %s p95 %s max %s; polled p50 %s max %s; returns moved %s (fair share %.1f); duplicates %d; load %s\n",
		res.Signal, res.Devices, res.Interval, res.Kills, res.Victim, res.Moved, res.Owned, res.SampleP50, res.SampleP95, res.SampleMax,
		res.PolledP50, res.PolledMax, ints(res.RejoinMoved), res.FairShare, res.Duplicates, res.Load)
	return res, nil
}

// startGroup starts the site peer, the simulators and the pollers, and
// waits for the group to settle.
func (s *failoverSite) startGroup(ctx context.Context, size FailoverSize, sims int) ([]string, meshmon.Assignment, string, error) {
	if err := s.startPeer(ctx); err != nil {
		return nil, meshmon.Assignment{}, "", err
	}
	if _, err := s.follow(); err != nil {
		return nil, meshmon.Assignment{}, "", err
	}
	if err := s.startSims(ctx, size, sims); err != nil {
		return nil, meshmon.Assignment{}, "", err
	}
	var members []string
	for i := range s.bc.Pollers {
		name := fmt.Sprintf("p%d", i+1)
		members = append(members, name)
		if err := s.startPoller(ctx, name); err != nil {
			return nil, meshmon.Assignment{}, "", err
		}
	}
	a, leader, err := s.settle(ctx, members, size.Devices)
	if err != nil {
		return nil, a, "", err
	}
	return members, a, leader, s.watchGroup(ctx)
}

// sum adds the kills up.
func (r *failoverResult) sum() {
	var first, polled []time.Duration
	for _, k := range r.PerKill {
		r.Kills++
		r.Owned += k.Owned
		r.Moved += k.Moved
		r.Duplicates += k.Duplicates
		r.RejoinMoved = append(r.RejoinMoved, k.RejoinMoved)
		first = append(first, k.first...)
		polled = append(polled, k.polled...)
	}
	slices.Sort(first)
	slices.Sort(polled)
	r.failoverTimes = timesOf(first, polled)
}

func ints(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ", ")
}

// printFailover prints a row a size.
func printFailover(w io.Writer, results []failoverResult) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nDEVICES\tINTERVAL\tSIGNAL\tKILLS\tMOVED (VICTIMS' DEVICES)\tKILL → FIRST SAMPLE P50 / P95 / MAX\tPOLLED P50 / MAX\tRETURNS MOVED (FAIR SHARE)\tDUPLICATES\tLOAD")
	for _, r := range results {
		if r.Soak != nil {
			fmt.Fprintf(tw, "%d\t%s\tsoak %s\t-\t%d from a live poller\t-\t-\t-\t-\t%s\n", r.Devices, r.Interval, r.Soak.For, r.Soak.Moved, r.Load)
			continue
		}
		fmt.Fprintf(tw, "%d\t%s\t%s (%s)\t%d\t%d (%d)\t%s / %s / %s\t%s / %s\t%s (%.1f)\t%d\t%s\n", r.Devices, r.Interval, r.Signal, r.Victim, r.Kills,
			r.Moved, r.Owned, r.SampleP50, r.SampleP95, r.SampleMax, r.PolledP50, r.PolledMax, ints(r.RejoinMoved), r.FairShare, r.Duplicates, r.Load)
	}
	return tw.Flush()
}
