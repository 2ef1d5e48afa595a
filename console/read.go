package console

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/alarm"
	"github.com/meshmon/meshmon/bus"
)

// What the pages read, every read through the session's own connection
// (and so within what its credential may read).

// maxSubjects bounds the subjects a site or device page looks at.
const maxSubjects = 5000

// epmMinutes is how many minutes the sites page charts events per minute
// over.
const epmMinutes = 30

// eventsPerMinute counts each site's events stored in each of the last
// epmMinutes minutes, oldest first.
func eventsPerMinute(ctx context.Context, js jetstream.JetStream, now time.Time) (map[string][]int, error) {
	start := now.Truncate(time.Minute).Add(-(epmMinutes - 1) * time.Minute)
	out := map[string][]int{}
	err := bus.Tail(ctx, js, bus.TailOptions{Subject: bus.EventsSubjects, Since: start}, func(m bus.TailMsg) error {
		var ev meshmon.Event
		if bus.ReadEvent(m.Subject, m.Header, m.Data, &ev) != nil {
			return nil
		}
		i := int(m.Time.Sub(start) / time.Minute)
		if i < 0 || i >= epmMinutes {
			return nil
		}
		if out[ev.Data.Site] == nil {
			out[ev.Data.Site] = make([]int, epmMinutes)
		}
		out[ev.Data.Site][i]++
		return nil
	})
	return out, err
}

// checkState is one check of a device as its latest event left it.
type checkState struct {
	Check    string
	Kind     string
	State    string
	Severity string
	Message  string
	Time     time.Time
}

// deviceState is a device and the state of each of its checks.
type deviceState struct {
	Name   string
	Checks []checkState
	// Worst is the severity of its worst check that is not cleared; "ok"
	// when none.
	Worst   string
	Last    time.Time
	Samples bool // central holds samples of it
}

// severityRank orders severities, worst last.
var severityRank = map[string]int{meshmon.SeverityCleared: 0, meshmon.SeverityInfo: 1, meshmon.SeverityWarning: 2, meshmon.SeverityMajor: 3, meshmon.SeverityCritical: 4}

// deviceStates reads the devices of site (only device, when set) that
// central holds events or samples of, with the latest event of each check:
// the last message of each of their subjects in EVENTS.
func deviceStates(ctx context.Context, js jetstream.JetStream, site, device string) ([]deviceState, error) {
	byName := map[string]*deviceState{}
	get := func(name string) *deviceState {
		if byName[name] == nil {
			byName[name] = &deviceState{Name: name, Worst: "ok"}
		}
		return byName[name]
	}
	events, err := streamSubjects(ctx, js, bus.EventsStream, bus.EventFilter(site, device, ""))
	if err != nil {
		return nil, err
	}
	latest := map[string]map[string]checkState{} // device -> check -> state
	for _, subj := range events.subjects {
		m, err := events.s.GetLastMsgForSubject(ctx, subj)
		if err != nil {
			continue // gone since the info
		}
		var ev meshmon.Event
		if bus.ReadEvent(m.Subject, m.Header, m.Data, &ev) != nil {
			continue
		}
		d := ev.Data
		if latest[d.Device] == nil {
			latest[d.Device] = map[string]checkState{}
		}
		if c, ok := latest[d.Device][d.Check]; !ok || ev.Time.After(c.Time) {
			latest[d.Device][d.Check] = checkState{Check: d.Check, Kind: d.Kind, State: d.State, Severity: d.Severity, Message: d.Message, Time: ev.Time}
		}
	}
	for name, checks := range latest {
		ds := get(name)
		for _, c := range checks {
			ds.Checks = append(ds.Checks, c)
			ds.Last = maxTime(ds.Last, c.Time)
			if severityRank[c.Severity] > 1 && (ds.Worst == "ok" || severityRank[c.Severity] > severityRank[ds.Worst]) {
				ds.Worst = c.Severity
			}
		}
		slices.SortFunc(ds.Checks, func(a, b checkState) int { return cmp.Compare(a.Check, b.Check) })
	}
	samples, err := streamSubjects(ctx, js, bus.MetricsStream, bus.MetricFilter(site, device, ""))
	if err != nil {
		return nil, err
	}
	for _, subj := range samples.subjects {
		if m, err := samples.s.GetLastMsgForSubject(ctx, subj); err == nil {
			var sm meshmon.Sample
			if json.Unmarshal(m.Data, &sm) == nil && sm.Device != "" {
				ds := get(sm.Device)
				ds.Samples = true
				ds.Last = maxTime(ds.Last, sm.Time)
			}
		}
	}
	out := make([]deviceState, 0, len(byName))
	for _, ds := range byName {
		out = append(out, *ds)
	}
	slices.SortFunc(out, func(a, b deviceState) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// subjectsOf is a stream and the subjects it holds under a filter.
type subjectsOf struct {
	s        jetstream.Stream
	subjects []string
}

// streamSubjects lists the subjects of stream that match filter, at most
// maxSubjects of them.
func streamSubjects(ctx context.Context, js jetstream.JetStream, stream, filter string) (subjectsOf, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return subjectsOf{}, fmt.Errorf("stream %s: %w", stream, err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return subjectsOf{}, fmt.Errorf("stream %s: %w", stream, err)
	}
	out := subjectsOf{s: s}
	for subj := range info.State.Subjects {
		if len(out.subjects) == maxSubjects {
			break
		}
		out.subjects = append(out.subjects, subj)
	}
	slices.Sort(out.subjects)
	return out, nil
}

// recentEvents replays the events on filter stored since, the newest
// limit of them, newest first.
func recentEvents(ctx context.Context, js jetstream.JetStream, filter string, since time.Time, limit int) ([]eventRow, error) {
	var out []eventRow
	err := bus.Tail(ctx, js, bus.TailOptions{Subject: filter, Since: since}, func(m bus.TailMsg) error {
		if r, ok := rowOf("", m.Seq, m.Subject, m.Header, m.Data); ok {
			out = append(out, r)
			if len(out) > limit {
				out = out[1:]
			}
		}
		return nil
	})
	slices.Reverse(out)
	return out, err
}

// samplesOf replays a device's samples stored since.
func samplesOf(ctx context.Context, js jetstream.JetStream, site, device string, since time.Time) ([]meshmon.Sample, error) {
	var out []meshmon.Sample
	err := bus.Tail(ctx, js, bus.TailOptions{Subject: bus.MetricFilter(site, device, ""), Since: since}, func(m bus.TailMsg) error {
		var s meshmon.Sample
		if json.Unmarshal(m.Data, &s) == nil {
			out = append(out, s)
		}
		return nil
	})
	return out, err
}

// siteGroup is a site's poller group as the site page shows it.
type siteGroup struct {
	Status  bus.GroupStatus
	Pollers []meshmon.PollerInfo
}

// readSiteGroup reads a site's poller group over a connection of the
// session's user that takes its replies on the site's task reply prefix
// (bus.SiteInboxPrefix): the only replies a site's link carries back to
// central (tenancy), so the site's JetStream API answers there and not on
// the user's own inbox.
func (s *Server) readSiteGroup(ctx context.Context, se *session, site string) (siteGroup, error) {
	opts := append(slices.Clone(se.opts), nats.Name("meshmon-console "+se.who.User+" site "+site),
		nats.CustomInboxPrefix(bus.SiteInboxPrefix(site)), nats.NoReconnect())
	nc, err := s.cfg.Dial(ctx, opts...)
	if err != nil {
		return siteGroup{}, err
	}
	defer nc.Close()
	return readGroup(ctx, nc, site, s.cfg.Now())
}

// readGroup reads a site's pollers and poller group from the site peer,
// over its leaf link: a tenant admin's credential may ask the site's
// JetStream API, a NOC's may not (tenancy's permissions).
func readGroup(ctx context.Context, nc *nats.Conn, site string, now time.Time) (siteGroup, error) {
	sjs, err := jetstream.NewWithDomain(nc, site)
	if err != nil {
		return siteGroup{}, err
	}
	reg, err := bus.OpenRegistry(ctx, sjs)
	if err != nil {
		return siteGroup{}, err
	}
	pollers, err := reg.List(ctx)
	if err != nil {
		return siteGroup{}, err
	}
	var devs []meshmon.Device
	if inv, err := bus.OpenInventory(ctx, sjs); err == nil {
		devs, _ = inv.List(ctx)
	}
	st, err := bus.ReadSiteGroupStatus(ctx, sjs, site, pollers, devs, now)
	if err != nil {
		return siteGroup{}, err
	}
	mine := pollers[:0]
	for _, p := range pollers {
		if p.Site == site {
			mine = append(mine, p)
		}
	}
	return siteGroup{Status: st, Pollers: mine}, nil
}

// errNoAlarms: the tenant's account holds no alarms bucket (no alarm
// service runs at central yet).
var errNoAlarms = errors.New("no alarm data")

// readAlarms reads the open alarms of the alarms bucket, worst and newest
// first; errNoAlarms when there is no bucket.
func readAlarms(ctx context.Context, js jetstream.JetStream) ([]alarm.Alarm, error) {
	vals, err := bus.BucketValues(ctx, js, alarm.Bucket)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, errNoAlarms
	}
	if err != nil {
		return nil, fmt.Errorf("alarms: %w", err)
	}
	var out []alarm.Alarm
	for _, v := range vals {
		var a alarm.Alarm
		if json.Unmarshal(v, &a) == nil && a.State == alarm.StateOpen {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, func(a, b alarm.Alarm) int {
		if c := cmp.Compare(severityRank[b.Severity], severityRank[a.Severity]); c != 0 {
			return c
		}
		return b.LastSeen.Compare(a.LastSeen)
	})
	return out, nil
}
