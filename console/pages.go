package console

import (
	"context"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/alarm"
	"github.com/meshmon/meshmon/bus"
)

// opsNotice is what the pages that read a tenant's sites, devices and
// alarms say to the ops account's credential, which reads the tenants'
// events only.
const opsNotice = "The ops credential reads every tenant's events, live and replayed from a time (Events). Sites, devices and alarms live in each tenant's account: log in with that tenant's credential."

// read runs f with the session's read slot and a deadline.
func (s *Server) read(r *http.Request, se *session, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	if err := se.acquire(ctx); err != nil {
		return err
	}
	defer se.release()
	return f(ctx)
}

// siteRow is one site on the sites page.
type siteRow struct {
	bus.SiteLink
	Lag   string
	EPM   int // events in the last minute
	Chart template.HTML
}

// sitesData is the sites page.
type sitesData struct {
	Sites  []siteRow
	Notice string
}

// sitesPage lists the sites with their link to central and their events
// per minute.
func (s *Server) sitesPage(w http.ResponseWriter, r *http.Request, se *session) {
	if se.who.Ops {
		s.renderFor(w, se, http.StatusOK, "sites", "sites", "Sites", sitesData{Notice: opsNotice})
		return
	}
	var d sitesData
	err := s.read(r, se, func(ctx context.Context) error {
		links, _, err := bus.CentralStatus(ctx, se.js)
		if err != nil {
			return err
		}
		epm, err := eventsPerMinute(ctx, se.js, s.cfg.Now())
		if err != nil {
			return err
		}
		for _, l := range links {
			row := siteRow{SiteLink: l, Lag: "unknown"}
			if l.LagMessages != nil {
				row.Lag = strconv.FormatUint(*l.LagMessages, 10)
			}
			counts := epm[l.Name]
			if counts == nil {
				counts = make([]int, epmMinutes)
			}
			row.EPM = counts[len(counts)-1]
			row.Chart = barChart(fmt.Sprintf("events per minute at %s, last %d minutes", l.Name, epmMinutes), counts, 150, 24)
			d.Sites = append(d.Sites, row)
		}
		return nil
	})
	if err != nil {
		s.fail(w, se, err)
		return
	}
	s.renderFor(w, se, http.StatusOK, "sites", "sites", "Sites", d)
}

// groupTimeout bounds the wait for a site to answer for its poller group.
const groupTimeout = 3 * time.Second

// siteData is a site's page.
type siteData struct {
	Link       bus.SiteLink
	Devices    []deviceState
	Group      *siteGroup
	GroupError string
	// Links are the site's links as its devices' latest LLDP and CDP
	// neighbours report them, drawn as Topology.
	Links         []meshmon.Link
	Topology      template.HTML
	TopologyError string
}

// findSite returns the site's link, errNotFound when the credential's
// account has no such site.
func findSite(ctx context.Context, se *session, site string) (bus.SiteLink, error) {
	links, _, err := bus.CentralStatus(ctx, se.js)
	if err != nil {
		return bus.SiteLink{}, err
	}
	i := slices.IndexFunc(links, func(l bus.SiteLink) bool { return l.Name == site })
	if i < 0 {
		return bus.SiteLink{}, fmt.Errorf("site %s: %w", site, errNotFound)
	}
	return links[i], nil
}

// names validates the path's names; the error wraps errBadInput.
func names(r *http.Request, fields ...string) ([]string, error) {
	out := make([]string, len(fields))
	for i, f := range fields {
		out[i] = r.PathValue(f)
		if err := meshmon.ValidateName(f, out[i]); err != nil {
			return nil, fmt.Errorf("%w: %v", errBadInput, err)
		}
	}
	return out, nil
}

// sitePage shows a site: its link, its poller group (when the credential
// may ask the site) and its devices' states.
func (s *Server) sitePage(w http.ResponseWriter, r *http.Request, se *session) {
	n, err := names(r, "site")
	if err != nil {
		s.fail(w, se, err)
		return
	}
	if se.who.Ops {
		s.fail(w, se, fmt.Errorf("site %s: %w (%s)", n[0], errNotFound, opsNotice))
		return
	}
	var d siteData
	err = s.read(r, se, func(ctx context.Context) error {
		if d.Link, err = findSite(ctx, se, n[0]); err != nil {
			return err
		}
		if d.Devices, err = deviceStates(ctx, se.js, n[0], ""); err != nil {
			return err
		}
		readTopology(ctx, se, n[0], &d)
		if se.who.Role == "noc" {
			d.GroupError = "a NOC's credential may not ask the site; a tenant admin's shows the poller group here"
			return nil
		}
		gctx, cancel := context.WithTimeout(ctx, groupTimeout)
		defer cancel()
		if g, err := s.readSiteGroup(gctx, se, n[0]); err != nil {
			d.GroupError = "the site did not answer over its link: " + err.Error()
		} else {
			d.Group = &g
		}
		return nil
	})
	if err != nil {
		s.fail(w, se, err)
		return
	}
	s.renderFor(w, se, http.StatusOK, "site", "sites", "Site "+n[0], d)
}

// readTopology reads the site's links as `meshmon topology --site`
// does, from the lldp samples central holds, and draws them; a failed
// read is said on the page, which shows the rest.
func readTopology(ctx context.Context, se *session, site string, d *siteData) {
	devs, err := bus.ReadNeighbors(ctx, se.js, site)
	if err != nil {
		d.TopologyError = err.Error()
		return
	}
	d.Links = meshmon.Links(devs, nil)
	if len(d.Links) > 0 {
		d.Topology = topologySVG(site, d.Links, 720, 420)
	}
}

// deviceData is a device's page.
type deviceData struct {
	Site   string
	Device deviceState
	Events []eventRow
	Charts []template.HTML
}

// deviceWindow is how far back a device's page reads.
const deviceWindow = time.Hour

// devicePage shows a device: its checks, its recent events and charts of
// its samples of the last hour.
func (s *Server) devicePage(w http.ResponseWriter, r *http.Request, se *session) {
	n, err := names(r, "site", "device")
	if err != nil {
		s.fail(w, se, err)
		return
	}
	if se.who.Ops {
		s.fail(w, se, fmt.Errorf("device %s/%s: %w (%s)", n[0], n[1], errNotFound, opsNotice))
		return
	}
	now := s.cfg.Now()
	d := deviceData{Site: n[0]}
	err = s.read(r, se, func(ctx context.Context) error {
		devs, err := deviceStates(ctx, se.js, n[0], n[1])
		if err != nil {
			return err
		}
		if len(devs) == 0 {
			return fmt.Errorf("device %s at site %s: %w", n[1], n[0], errNotFound)
		}
		d.Device = devs[0]
		if d.Events, err = recentEvents(ctx, se.js, bus.EventFilter(n[0], n[1], ""), now.Add(-deviceWindow), 50); err != nil {
			return err
		}
		samples, err := samplesOf(ctx, se.js, n[0], n[1], now.Add(-deviceWindow))
		if err != nil {
			return err
		}
		d.Charts = deviceCharts(samples, now.Add(-deviceWindow), now)
		return nil
	})
	if err != nil {
		s.fail(w, se, err)
		return
	}
	s.renderFor(w, se, http.StatusOK, "device", "sites", "Device "+n[1], d)
}

// maxIfCharts bounds the interfaces charted on a device's page.
const maxIfCharts = 8

// deviceCharts draws a device's samples: ICMP round trip, uptime, and
// each interface's bits per second in and out.
func deviceCharts(samples []meshmon.Sample, from, to time.Time) []template.HTML {
	var rtt, uptime series
	rtt.Name, uptime.Name = "rtt avg", "uptime"
	ifs := map[string]*[2]series{}
	for _, sm := range samples {
		switch sm.Check {
		case meshmon.CheckICMP:
			if v, ok := sm.Values["rtt_avg_ms"]; ok && sm.Values["up"] == 1 {
				rtt.Points = append(rtt.Points, point{sm.Time, v})
			}
		case "system":
			if v, ok := sm.Values["uptime_seconds"]; ok {
				uptime.Points = append(uptime.Points, point{sm.Time, v})
			}
		case "if":
			for _, row := range sm.Interfaces {
				name := row.Name
				if name == "" {
					name = "if" + strconv.Itoa(row.Index)
				}
				if ifs[name] == nil {
					ifs[name] = &[2]series{{Name: "in"}, {Name: "out"}}
				}
				ifs[name][0].Points = append(ifs[name][0].Points, point{sm.Time, row.InBps})
				ifs[name][1].Points = append(ifs[name][1].Points, point{sm.Time, row.OutBps})
			}
		}
	}
	out := []template.HTML{
		lineChart("ICMP round trip", "ms", from, to, []series{rtt}, 640, 140),
		lineChart("uptime", "s", from, to, []series{uptime}, 640, 140),
	}
	var ifNames []string
	for n := range ifs {
		ifNames = append(ifNames, n)
	}
	sort.Strings(ifNames)
	for i, n := range ifNames {
		if i == maxIfCharts {
			break
		}
		out = append(out, lineChart("interface "+n+" traffic", "bps", from, to, ifs[n][:], 640, 140))
	}
	return out
}

// alarmsData is the alarms page.
type alarmsData struct {
	Alarms []alarm.Alarm
	NoData bool
	Notice string
}

// alarmsPage lists the open alarms of the tenant's alarms bucket, or says
// there is no alarm data.
func (s *Server) alarmsPage(w http.ResponseWriter, r *http.Request, se *session) {
	if se.who.Ops {
		s.renderFor(w, se, http.StatusOK, "alarms", "alarms", "Alarms", alarmsData{NoData: true, Notice: opsNotice})
		return
	}
	var d alarmsData
	err := s.read(r, se, func(ctx context.Context) (err error) {
		d.Alarms, err = readAlarms(ctx, se.js)
		if err == errNoAlarms {
			d.NoData, err = true, nil
		}
		return err
	})
	if err != nil {
		s.fail(w, se, err)
		return
	}
	s.renderFor(w, se, http.StatusOK, "alarms", "alarms", "Alarms", d)
}
