package poller

import (
	"github.com/prometheus/client_golang/prometheus"
)

// The poller's own Prometheus metrics (docs/metrics.md lists them). All
// but the poll duration histogram are read at scrape time from the
// counters the poller keeps anyway (Stats), so a scrape costs a few
// atomic loads and one read of the spool's size.

// pollBuckets are the poll duration histogram's buckets, in seconds: an
// SNMP get answers in milliseconds; a probe that times out takes its
// timeout (seconds) and its retries.
var pollBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

func newPollHistogram() prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "meshmon_poller_poll_duration_seconds",
		Help:    "How long one poll of one device (every check of it) took, without the wait for the spool's commit.",
		Buckets: pollBuckets,
	})
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	pollerInfoDesc     = desc("meshmon_poller_info", "The poller: always 1, with its name, site, tenant and version.", "poller", "site", "tenant", "version")
	pollerDevicesDesc  = desc("meshmon_poller_devices", "Devices this poller polls (owns).")
	pollsDesc          = desc("meshmon_poller_polls_total", "Polls made (one device, every check of it).")
	latePollsDesc      = desc("meshmon_poller_late_polls_total", "Polls that started more than max(interval/10, 1s) after they were due.")
	pollLagMaxDesc     = desc("meshmon_poller_poll_lag_max_seconds", "The latest any poll started after it was due, since start.")
	spoolMessagesDesc  = desc("meshmon_poller_spool_messages", "Messages in the local spool that the peer has not acknowledged.")
	spoolBytesDesc     = desc("meshmon_poller_spool_bytes", "Bytes in the local spool.")
	publishedDesc      = desc("meshmon_poller_published_messages_total", "Messages the peer acknowledged.")
	publishErrorsDesc  = desc("meshmon_poller_publish_errors_total", "Publish attempts that failed, by reason: unreachable (no answer, retried), peer_disk_full (retried), rejected (the peer refused the message for good; dropped).", "reason")
	droppedDesc        = desc("meshmon_poller_dropped_messages_total", "Observations lost, by reason: spool_full, corrupt (undecodable spool entry), superseded (another group member polled the device then).", "reason")
	connectedDesc      = desc("meshmon_poller_peer_connected", "1 when the last publish attempt reached the peer.")
	trapsInDesc        = desc("meshmon_poller_traps_received_total", "Traps and informs received.")
	trapsCommittedDesc = desc("meshmon_poller_traps_committed_total", "Traps spooled as events.")
	trapsDroppedDesc   = desc("meshmon_poller_traps_dropped_total", "Traps dropped because the trap queue was full.")
	trapsInvalidDesc   = desc("meshmon_poller_traps_invalid_total", "Packets at the trap port dropped as invalid, by reason (malformed, bad_auth, unknown_user, ...).", "reason")
	groupMemberDesc    = desc("meshmon_poller_group_member", "1 when the poller takes part in its site's poller group.")
	groupLeaderDesc    = desc("meshmon_poller_group_leader", "1 when the group's latest assignment names this poller its leader.")
	assignRevDesc      = desc("meshmon_poller_assignment_revision", "Revision of the group assignment the poller polls under (0: none yet).")
	leaderChangesDesc  = desc("meshmon_poller_group_leader_changes_total", "Times an assignment named another leader than the one before (a leader failover, as this poller saw it).")
	movedDesc          = desc("meshmon_poller_devices_moved_total", "Devices the group moved to this poller (in: taken over from another member) or away from it (out).", "direction")
)

// Collector is a prometheus.Collector of the poller that poller() returns
// at scrape time; nil (a poller not started yet) reports nothing. It is
// safe for concurrent scrapes.
func Collector(poller func() *Poller) prometheus.Collector { return collector{poller} }

type collector struct{ poller func() *Poller }

// Describe sends every metric's description.
func (collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{pollerInfoDesc, pollerDevicesDesc, pollsDesc, latePollsDesc, pollLagMaxDesc, spoolMessagesDesc,
		spoolBytesDesc, publishedDesc, publishErrorsDesc, droppedDesc, connectedDesc, trapsInDesc, trapsCommittedDesc, trapsDroppedDesc,
		trapsInvalidDesc, groupMemberDesc, groupLeaderDesc, assignRevDesc, leaderChangesDesc, movedDesc} {
		ch <- d
	}
	newPollHistogram().Describe(ch)
}

// Collect reads the poller's state.
func (c collector) Collect(ch chan<- prometheus.Metric) {
	p := c.poller()
	if p == nil {
		return
	}
	st := p.Stats()
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	counter := func(d *prometheus.Desc, v uint64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), l...)
	}
	gauge(pollerInfoDesc, 1, p.cfg.Name, p.cfg.Site, p.cfg.Tenant, p.cfg.Version)
	gauge(pollerDevicesDesc, float64(st.Devices))
	counter(pollsDesc, st.Polls)
	counter(latePollsDesc, st.Late)
	gauge(pollLagMaxDesc, st.LagMax.Seconds())
	gauge(spoolMessagesDesc, float64(st.Spooled))
	gauge(spoolBytesDesc, float64(st.SpoolBytes))
	counter(publishedDesc, st.Published)
	counter(publishErrorsDesc, p.pubUnreachable.Load(), "unreachable")
	counter(publishErrorsDesc, p.pubDiskFull.Load(), "peer_disk_full")
	counter(publishErrorsDesc, st.Rejected, "rejected")
	counter(droppedDesc, st.Dropped, "spool_full")
	counter(droppedDesc, st.Corrupt, "corrupt")
	counter(droppedDesc, st.Superseded, "superseded")
	gauge(connectedDesc, b2f(st.Connected))
	counter(trapsInDesc, st.TrapsIn)
	counter(trapsCommittedDesc, st.TrapsCommitted)
	counter(trapsDroppedDesc, st.TrapsDropped)
	for r := dropMalformed; r < nDropReasons; r++ {
		if dropNames[r] != "" {
			counter(trapsInvalidDesc, st.TrapsInvalid[dropNames[r]], dropNames[r])
		}
	}
	p.gmu.Lock()
	leader := p.gs.latest.Leader
	p.gmu.Unlock()
	gauge(groupMemberDesc, b2f(p.group != nil))
	gauge(groupLeaderDesc, b2f(p.group != nil && leader == p.cfg.Name))
	gauge(assignRevDesc, float64(p.assignRev.Load()))
	counter(leaderChangesDesc, p.leaderChanges.Load())
	counter(movedDesc, p.moveIn.Load(), "in")
	counter(movedDesc, p.moveOut.Load(), "out")
	p.pollSeconds.Collect(ch)
}
