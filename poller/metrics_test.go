package poller_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/bus/pollerlink"
	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/internal/selfmetrics"
	"github.com/meshmon/meshmon/poller"
)

// servePollerMetrics serves p's metrics in plaintext on loopback and
// returns their URL.
func servePollerMetrics(t *testing.T, p *poller.Poller) string {
	t.Helper()
	s, err := selfmetrics.Serve(selfmetrics.Config{Listen: "127.0.0.1:0", Plaintext: true},
		selfmetrics.NewRegistry(poller.Collector(func() *poller.Poller { return p })), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s.URL()
}

// metricsHold is a check of one series of a scrape.
type metricsHold struct {
	name   string
	labels []string
	ok     func(float64) bool
	rule   string
}

func atLeast(v float64) func(float64) bool { return func(x float64) bool { return x >= v } }
func is(v float64) func(float64) bool      { return func(x float64) bool { return x == v } }

// waitMetrics scrapes url until every check holds.
func waitMetrics(t *testing.T, url string, within time.Duration, what string, checks ...metricsHold) {
	t.Helper()
	eventually.NoError(t, within, what, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		fams, err := selfmetrics.Scrape(ctx, nil, url)
		if err != nil {
			return err
		}
		for _, c := range checks {
			v, ok := fams.Value(c.name, c.labels...)
			if !ok {
				return fmt.Errorf("no %s%v", c.name, c.labels)
			}
			if !c.ok(v) {
				return fmt.Errorf("%s%v = %v, want %s", c.name, c.labels, v, c.rule)
			}
		}
		return nil
	})
}

// TestPollerMetrics: a poller service polling simulated devices and
// taking traps serves, parsed with Prometheus' text parser, its devices,
// polls and their durations, spool, publishes, traps (a malformed packet
// among them) and group seat; when a second member joins devices move
// out, and when the leader stops the second member counts the leader's
// change and the devices it took over.
func TestPollerMetrics(t *testing.T) {
	e := newEnv(t, 4, "127.73.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg1 := serviceConfig("s1", t.TempDir())
	cfg1.TrapListen = "127.0.0.1:0"
	p1, stop1, err := pollerlink.StartReady(ctx, cfg1, bus.ConnConfig{URL: e.url}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stop1() })
	url1 := servePollerMetrics(t, p1)

	a := e.sim.Agents()[0]
	eventually.True(t, 10*time.Second, "the poller to own every device", func() bool { return p1.Stats().Devices == 4 })
	if err := a.SendTrap(ctx, p1.TrapAddr().String(), meshmon.SNMPv2c); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("udp", p1.TrapAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = c.Write([]byte("not snmp"))
	c.Close()

	waitMetrics(t, url1, 20*time.Second, "the first poller's metrics",
		metricsHold{"meshmon_poller_info", []string{"poller", "s1", "site", "lab"}, is(1), "1"},
		metricsHold{"meshmon_poller_devices", nil, is(4), "4"},
		metricsHold{"meshmon_poller_polls_total", nil, atLeast(4), ">= 4"},
		metricsHold{"meshmon_poller_poll_duration_seconds", nil, atLeast(4), ">= 4 observations"},
		metricsHold{"meshmon_poller_late_polls_total", nil, atLeast(0), "a count"},
		metricsHold{"meshmon_poller_poll_lag_max_seconds", nil, atLeast(0), "a lag"},
		metricsHold{"meshmon_poller_spool_messages", nil, atLeast(0), "a depth"},
		metricsHold{"meshmon_poller_spool_bytes", nil, atLeast(0), "a size"},
		metricsHold{"meshmon_poller_published_messages_total", nil, atLeast(4), ">= 4"},
		metricsHold{"meshmon_poller_publish_errors_total", []string{"reason", "unreachable"}, is(0), "0"},
		metricsHold{"meshmon_poller_publish_errors_total", []string{"reason", "rejected"}, is(0), "0"},
		metricsHold{"meshmon_poller_dropped_messages_total", []string{"reason", "spool_full"}, is(0), "0"},
		metricsHold{"meshmon_poller_peer_connected", nil, is(1), "1"},
		metricsHold{"meshmon_poller_traps_received_total", nil, atLeast(1), ">= 1"},
		metricsHold{"meshmon_poller_traps_committed_total", nil, atLeast(1), ">= 1"},
		metricsHold{"meshmon_poller_traps_dropped_total", nil, is(0), "0"},
		metricsHold{"meshmon_poller_traps_invalid_total", []string{"reason", "malformed"}, is(1), "1"},
		metricsHold{"meshmon_poller_traps_invalid_total", []string{"reason", "bad_auth"}, is(0), "0"},
		metricsHold{"meshmon_poller_group_member", nil, is(1), "1"},
		metricsHold{"meshmon_poller_group_leader", nil, is(1), "1 (the only member)"},
		metricsHold{"meshmon_poller_assignment_revision", nil, atLeast(1), ">= 1"},
		metricsHold{"meshmon_poller_group_leader_changes_total", nil, is(0), "0"},
		metricsHold{"meshmon_poller_devices_moved_total", []string{"direction", "in"}, is(0), "0"},
	)

	// A second member joins: the leader gives it devices of the first.
	p2, stop2, err := pollerlink.StartReady(ctx, serviceConfig("s2", t.TempDir()), bus.ConnConfig{URL: e.url}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stop2() })
	url2 := servePollerMetrics(t, p2)
	waitMetrics(t, url1, 20*time.Second, "devices moved out of the first poller",
		metricsHold{"meshmon_poller_devices_moved_total", []string{"direction", "out"}, atLeast(1), ">= 1"},
		metricsHold{"meshmon_poller_devices", nil, func(x float64) bool { return x < 4 }, "< 4"},
	)
	waitMetrics(t, url2, 20*time.Second, "the second poller a member",
		metricsHold{"meshmon_poller_group_leader", nil, is(0), "0"},
		metricsHold{"meshmon_poller_devices", nil, atLeast(1), ">= 1"},
	)

	// The leader stops: the second member leads and takes its devices.
	if err := stop1(); err != nil {
		t.Fatal(err)
	}
	waitMetrics(t, url2, 30*time.Second, "the second poller leads",
		metricsHold{"meshmon_poller_group_leader", nil, is(1), "1"},
		metricsHold{"meshmon_poller_group_leader_changes_total", nil, atLeast(1), ">= 1"},
		metricsHold{"meshmon_poller_devices", nil, is(4), "4"},
		metricsHold{"meshmon_poller_devices_moved_total", []string{"direction", "in"}, atLeast(1), ">= 1"},
	)
}
