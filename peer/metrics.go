package peer

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
)

// The peer's own Prometheus metrics (docs/metrics.md lists them). Every
// series but the delay histogram is read at scrape time from the embedded
// server (one Jsz call, the connection counts, the store's file system)
// and from the accounts' interest in the subjects each link brings
// (natsproto_v2_15.go), so a peer nobody scrapes pays nothing for them.
//
// The delay histogram needs each event as it is stored: a site peer
// subscribes, in each account it keeps streams in, to the events' subjects
// in a queue group (so each event is seen by one member of a site
// cluster, not routed to every one) and reads each event's time. It
// starts with the first call of Metrics.

func pdesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	peerInfoDesc       = pdesc("meshmon_peer_info", "The peer: always 1, with its name, role, JetStream domain and nats-server version.", "peer", "role", "domain", "version")
	clientConnsDesc    = pdesc("meshmon_peer_client_connections", "Client connections (pollers, CLI, NOC, in-process).")
	leafConnsDesc      = pdesc("meshmon_peer_leaf_connections", "Leaf node connections: at central, sites' links (one per tenant a site serves); at a site, its links to central.")
	routeConnsDesc     = pdesc("meshmon_peer_route_connections", "Route connections to the other members of the peer's cluster.")
	jsEnabledDesc      = pdesc("meshmon_peer_jetstream_enabled", "1 while JetStream runs; 0 while the peer has shut it down (store disk full) or it failed.")
	storeUsedDesc      = pdesc("meshmon_peer_store_used_bytes", "Bytes JetStream's file store holds.")
	storeLimitDesc     = pdesc("meshmon_peer_store_limit_bytes", "The most JetStream may store (its max_file_store).")
	diskFreeDesc       = pdesc("meshmon_peer_disk_free_bytes", "Free bytes on the file system of the peer's store.")
	diskSizeDesc       = pdesc("meshmon_peer_disk_size_bytes", "Size of the file system of the peer's store.")
	streamMsgsDesc     = pdesc("meshmon_peer_stream_messages", "Messages in a stream replica this peer holds.", "tenant", "stream")
	streamBytesDesc    = pdesc("meshmon_peer_stream_bytes", "Bytes in a stream replica this peer holds.", "tenant", "stream")
	streamStoredDesc   = pdesc("meshmon_peer_stream_messages_stored_total", "Messages a stream replica has stored since it was made (its last sequence): rate() is the stream's message rate.", "tenant", "stream")
	streamLimitDesc    = pdesc("meshmon_peer_stream_limit_bytes", "A stream's max_bytes (absent when unlimited).", "tenant", "stream")
	siteLinkDesc       = pdesc("meshmon_peer_site_link_up", "Central: 1 while the site's link reaches this peer's account (the site's JetStream is within reach), 0 when not.", "tenant", "site")
	sourceLagDesc      = pdesc("meshmon_peer_source_lag_messages", "Central, on the stream's leader: messages of the site's stream that central's source has not yet stored.", "tenant", "stream", "site")
	sourceContactDesc  = pdesc("meshmon_peer_source_last_contact_seconds", "Central, on the stream's leader: seconds since the source last heard from the site (absent when not since it was set up).", "tenant", "stream", "site")
	centralLinkDesc    = pdesc("meshmon_peer_central_link_up", "Site: 1 while this peer's link reaches central's JetStream in the tenant's account, 0 when not.", "tenant")
	centralPendingDesc = pdesc("meshmon_peer_central_pending_messages", "Site, on the consumer's leader: messages of the stream central has not acknowledged (what a WAN cut holds back).", "tenant", "stream")
	centralAckDesc     = pdesc("meshmon_peer_central_last_ack_timestamp_seconds", "Site, on the consumer's leader: when central last acknowledged a message of the stream (Unix time; absent when never).", "tenant", "stream")
)

// delayBuckets are the delay histogram's buckets, in seconds: from a
// live event (tens of milliseconds) to one spooled through an outage.
var delayBuckets = []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400}

// peerMetrics is the peer's collector.
type peerMetrics struct {
	p     *Peer
	delay prometheus.Histogram
	once  sync.Once
}

// Metrics returns the peer's Prometheus collector. Call it after Start;
// on a site peer its first call subscribes to the events that feed
// meshmon_peer_event_store_delay_seconds (until Close) and returns once
// they are observed.
func (p *Peer) Metrics() prometheus.Collector {
	p.metricsOnce.Do(func() {
		p.metrics = &peerMetrics{p: p, delay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "meshmon_peer_event_store_delay_seconds",
			Help:    "Site: from an event's observation (its time) to its storing in EVENTS (its republish on stored.ev.>).",
			Buckets: delayBuckets,
		})}
		if p.cfg.Role == RoleSite && p.Server() != nil {
			p.metrics.watchDelays()
		}
	})
	return p.metrics
}

// Describe sends every metric's description.
func (m *peerMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{peerInfoDesc, clientConnsDesc, leafConnsDesc, routeConnsDesc, jsEnabledDesc, storeUsedDesc,
		storeLimitDesc, diskFreeDesc, diskSizeDesc, streamMsgsDesc, streamBytesDesc, streamStoredDesc, streamLimitDesc, siteLinkDesc, sourceLagDesc,
		sourceContactDesc, centralLinkDesc, centralPendingDesc, centralAckDesc} {
		ch <- d
	}
	m.delay.Describe(ch)
}

// Collect reads the server's state.
func (m *peerMetrics) Collect(ch chan<- prometheus.Metric) {
	p := m.p
	srv := p.Server()
	if srv == nil {
		return
	}
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	gauge(peerInfoDesc, 1, p.cfg.Name, p.cfg.Role, p.cfg.Domain(), server.VERSION)
	gauge(clientConnsDesc, float64(srv.NumClients()))
	gauge(leafConnsDesc, float64(srv.NumLeafNodes()))
	gauge(routeConnsDesc, float64(srv.NumRoutes()))
	gauge(jsEnabledDesc, b2f(srv.JetStreamEnabled()))
	free, size := diskSpace(p.cfg.StoreDir())
	if size > 0 {
		gauge(diskFreeDesc, float64(free))
		gauge(diskSizeDesc, float64(size))
	}
	m.delay.Collect(ch)
	if !srv.JetStreamEnabled() {
		return
	}
	info, err := jszAccounts(srv, server.JSzOptions{Streams: true, Consumer: true, Config: true})
	if err != nil {
		return
	}
	gauge(storeUsedDesc, float64(info.Store))
	if info.Config.MaxStore > 0 {
		gauge(storeLimitDesc, float64(info.Config.MaxStore))
	}
	for _, ad := range info.AccountDetails {
		m.collectAccount(ch, srv, ad)
	}
}

// collectAccount sends the series of one account's streams and links.
func (m *peerMetrics) collectAccount(ch chan<- prometheus.Metric, srv *server.Server, ad *server.AccountDetail) {
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	tenant := ad.Name // the account's name tag in operator mode
	acc, _ := srv.LookupAccount(ad.Id)
	sites := map[string]bool{}
	for _, sd := range ad.Streams {
		gauge(streamMsgsDesc, float64(sd.State.Msgs), tenant, sd.Name)
		gauge(streamBytesDesc, float64(sd.State.Bytes), tenant, sd.Name)
		ch <- prometheus.MustNewConstMetric(streamStoredDesc, prometheus.CounterValue, float64(sd.State.LastSeq), tenant, sd.Name)
		if sd.Config != nil && sd.Config.MaxBytes > 0 {
			gauge(streamLimitDesc, float64(sd.Config.MaxBytes), tenant, sd.Name)
		}
		if sd.Name != bus.EventsStream && sd.Name != bus.MetricsStream {
			continue
		}
		if sd.Config != nil {
			for _, src := range sd.Config.Sources {
				if src.External != nil {
					sites[bus.SourceSite(src.External.ApiPrefix)] = true
				}
			}
		}
		leads := sd.Cluster == nil || sd.Cluster.Leader == "" || sd.Cluster.Leader == srv.Name()
		if leads {
			m.collectSources(ch, tenant, sd)
		}
	}
	if acc == nil {
		return
	}
	for site := range sites {
		gauge(siteLinkDesc, b2f(siteReachable(acc, site, bus.EventsStream)), tenant, site)
	}
	if m.p.cfg.Role == RoleSite && (len(m.p.cfg.Central) > 0 || len(m.p.cfg.Tenants) > 0) {
		gauge(centralLinkDesc, b2f(centralLinked(acc)), tenant)
	}
}

// collectSources sends, for a stream this peer leads, its sources' lag
// and last contact (central) and its source consumers' backlog and last
// acknowledgement (a site).
func (m *peerMetrics) collectSources(ch chan<- prometheus.Metric, tenant string, sd server.StreamDetail) {
	for _, src := range sd.Sources {
		if src.External == nil {
			continue
		}
		site := bus.SourceSite(src.External.ApiPrefix)
		ch <- prometheus.MustNewConstMetric(sourceLagDesc, prometheus.GaugeValue, float64(src.Lag), tenant, sd.Name, site)
		if src.Active >= 0 {
			ch <- prometheus.MustNewConstMetric(sourceContactDesc, prometheus.GaugeValue, src.Active.Seconds(), tenant, sd.Name, site)
		}
	}
	for _, ci := range sd.Consumer {
		if ci == nil || ci.Name != bus.SourceConsumer(sd.Name) {
			continue
		}
		if ci.Cluster != nil && ci.Cluster.Leader != "" && ci.Cluster.Leader != m.p.Server().Name() {
			continue
		}
		ch <- prometheus.MustNewConstMetric(centralPendingDesc, prometheus.GaugeValue, float64(ci.NumPending+uint64(ci.NumAckPending)), tenant, sd.Name)
		if last := ci.AckFloor.Last; last != nil && !last.IsZero() {
			ch <- prometheus.MustNewConstMetric(centralAckDesc, prometheus.GaugeValue, float64(last.UnixNano())/1e9, tenant, sd.Name)
		}
	}
}

// delayQueue is the queue group of the delay watch's subscriptions.
const delayQueue = "meshmon-metrics-delay"

// watchDelays subscribes, in each account the site keeps streams in, to
// the stored feed of its events (EVENTS republishes each on stored.ev.>
// as it stores it), and observes the delay of every event stored from
// then on (its time to its storing). Not to ev.> itself: a subscriber
// there answers nothing, yet it counts as a responder, so a publish made
// while the stream does not exist yet (a site cluster before its quorum)
// would wait out its timeout instead of failing at once with no
// responders (TestSiteCluster hung so). It returns once the
// subscriptions are in place; they end when the peer closes.
func (m *peerMetrics) watchDelays() {
	p := m.p
	dials := []func() (*nats.Conn, error){func() (*nats.Conn, error) {
		return p.InProcessConn(nats.Name("meshmon-peer-metrics"))
	}}
	if len(p.cfg.Tenants) > 0 {
		srv := p.Server()
		dials = dials[:0]
		for _, t := range p.cfg.Tenants {
			dials = append(dials, func() (*nats.Conn, error) {
				return t.upkeepConn(srv, p.cfg.Site, "meshmon-peer-metrics-"+t.Name)
			})
		}
	}
	observe := func(msg *nats.Msg) {
		var ev meshmon.Event
		if !strings.HasPrefix(msg.Subject, bus.StoredPrefix+"ev.") || meshmon.DecodeEvent(msg.Data, &ev) != nil || ev.Time.IsZero() {
			return
		}
		m.delay.Observe(max(0, time.Since(ev.Time).Seconds()))
	}
	var conns []*nats.Conn
	for _, dial := range dials {
		nc, err := dial()
		if err != nil {
			p.log.Warn("metrics: in-process connection", "err", err)
			continue
		}
		conns = append(conns, nc)
		sub, err := nc.QueueSubscribe(bus.StoredPrefix+bus.EventsSubjects, delayQueue, observe)
		if err == nil {
			// Behind, it drops what it would observe, never the publisher's.
			_ = sub.SetPendingLimits(64<<10, 64<<20)
			err = nc.FlushTimeout(5 * time.Second)
		}
		if err != nil {
			p.log.Warn("metrics: subscribe", "subject", bus.StoredPrefix+bus.EventsSubjects, "err", err)
		}
	}
	p.background(func(ctx context.Context) {
		<-ctx.Done()
		for _, nc := range conns {
			nc.Close()
		}
	})
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
