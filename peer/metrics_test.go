package peer

import (
	"fmt"
	"testing"
	"time"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/internal/selfmetrics"
)

// servePeerMetrics serves p's metrics in plaintext on loopback and returns
// their URL.
func servePeerMetrics(t *testing.T, p *Peer) string {
	t.Helper()
	s, err := selfmetrics.Serve(selfmetrics.Config{Listen: "127.0.0.1:0", Plaintext: true}, selfmetrics.NewRegistry(p.Metrics()), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s.URL()
}

// TestPeerMetrics: a central peer and a site peer on a leaf link, events
// published at the site and sourced by central; each peer's /metrics,
// parsed with Prometheus' text parser, has its connections, streams,
// links, sources, store and (at the site) the events' delay.
func TestPeerMetrics(t *testing.T) {
	ctx := testCtx(t)
	m := centralWithSite(t, "paris")
	central, cjs, paris, pjs := m.central, m.cjs, m.site, m.sjs
	curl, surl := servePeerMetrics(t, central), servePeerMetrics(t, paris)

	// Events observed 2 s ago, stored now.
	const n = 20
	observed := time.Now().Add(-2 * time.Second).UTC()
	msgs := make([]meshmon.Message, n)
	for i := range msgs {
		msgs[i] = meshmon.Message{Stream: meshmon.StreamEvents, Site: "paris", Device: "d1", Kind: "trap", ID: fmt.Sprintf("m-%d", i),
			Data: fmt.Appendf(nil, `{"id":"m-%d","time":%q}`, i, observed.Format(time.RFC3339Nano))}
	}
	if got, err := bus.NewPublisher(pjs).PublishBatch(ctx, msgs); err != nil || got != n {
		t.Fatalf("publish: %d of %d, %v", got, n, err)
	}
	waitCount(t, cjs, "paris", n, 20*time.Second)

	type want struct {
		name   string
		labels []string
		ok     func(float64) bool
		rule   string
	}
	is := func(v float64) func(float64) bool { return func(x float64) bool { return x == v } }
	atLeast := func(v float64) func(float64) bool { return func(x float64) bool { return x >= v } }
	check := func(url string, wants []want) func() error {
		return func() error {
			fams, err := selfmetrics.Scrape(ctx, nil, url)
			if err != nil {
				return err
			}
			for _, w := range wants {
				v, ok := fams.Value(w.name, w.labels...)
				if !ok {
					return fmt.Errorf("%s: no %s%v", url, w.name, w.labels)
				}
				if !w.ok(v) {
					return fmt.Errorf("%s: %s%v = %v, want %s", url, w.name, w.labels, v, w.rule)
				}
			}
			return nil
		}
	}
	eventually.NoError(t, 20*time.Second, "surl metrics", check(surl, []want{
		{"meshmon_peer_info", []string{"role", "site", "domain", "paris"}, is(1), "1"},
		{"meshmon_peer_client_connections", nil, atLeast(1), ">= 1"},
		{"meshmon_peer_leaf_connections", nil, atLeast(1), ">= 1"},
		{"meshmon_peer_jetstream_enabled", nil, is(1), "1"},
		{"meshmon_peer_stream_messages", []string{"stream", "EVENTS"}, is(n), "20"},
		{"meshmon_peer_stream_messages_stored_total", []string{"stream", "EVENTS"}, is(n), "20"},
		{"meshmon_peer_stream_bytes", []string{"stream", "EVENTS"}, atLeast(n * 20), "> 400"},
		{"meshmon_peer_stream_limit_bytes", []string{"stream", "EVENTS"}, atLeast(1), "> 0"},
		{"meshmon_peer_store_used_bytes", nil, atLeast(n * 20), "> 400"},
		{"meshmon_peer_store_limit_bytes", nil, atLeast(1), "> 0"},
		{"meshmon_peer_disk_free_bytes", nil, atLeast(1), "> 0"},
		{"meshmon_peer_disk_size_bytes", nil, atLeast(1), "> 0"},
		{"meshmon_peer_central_link_up", nil, is(1), "1"},
		{"meshmon_peer_central_pending_messages", []string{"stream", "EVENTS"}, is(0), "0 (all at central)"},
		{"meshmon_peer_central_last_ack_timestamp_seconds", []string{"stream", "EVENTS"}, atLeast(float64(observed.Unix())), "after the events"},
		{"meshmon_peer_event_store_delay_seconds", nil, is(n), "20 observations"},
	}))
	eventually.NoError(t, 20*time.Second, "curl metrics", check(curl, []want{
		{"meshmon_peer_info", []string{"role", "central", "domain", bus.HubDomain}, is(1), "1"},
		{"meshmon_peer_leaf_connections", nil, atLeast(1), ">= 1"},
		{"meshmon_peer_stream_messages", []string{"stream", "EVENTS"}, is(n), "20"},
		{"meshmon_peer_site_link_up", []string{"site", "paris"}, is(1), "1"},
		{"meshmon_peer_source_lag_messages", []string{"stream", "EVENTS", "site", "paris"}, is(0), "0"},
		{"meshmon_peer_source_last_contact_seconds", []string{"stream", "EVENTS", "site", "paris"}, func(x float64) bool { return x >= 0 && x < 10 }, "within 10 s"},
	}))
	// The delays are the 2 s the events waited, and a little.
	fams, err := selfmetrics.Scrape(ctx, nil, surl)
	if err != nil {
		t.Fatal(err)
	}
	if sum, _ := fams.Sum("meshmon_peer_event_store_delay_seconds"); sum < 2*n || sum > 30*n {
		t.Errorf("delay sum %.1f s over %d events, want about 2 s each", sum, n)
	}

	// The site goes away: central says its link is down.
	paris.Close()
	eventually.NoError(t, 30*time.Second, "curl metrics", check(curl, []want{
		{"meshmon_peer_site_link_up", []string{"site", "paris"}, is(0), "0 once the site is gone"},
	}))
}
