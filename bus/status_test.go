package bus

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/meshmon/meshmon"
)

// TestCentralLinkLine: a site's link to central as status prints it.
func TestCentralLinkLine(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	seven, zero := uint64(7), uint64(0)
	for _, tt := range []struct {
		l    CentralLink
		want string
	}{
		{CentralLink{State: LinkDown, LastAck: now.Add(-90 * time.Second), Events: &seven, Samples: &zero},
			"link to central: down, central last acknowledged an event 1m30s ago; not yet at central: 7 events, 0 samples"},
		{CentralLink{State: LinkUp, Events: &zero, Samples: &zero},
			"link to central: up, central has acknowledged no event yet; not yet at central: 0 events, 0 samples"},
		{CentralLink{State: LinkDown, Since: now.Add(-45 * time.Second), LastAck: now.Add(-50 * time.Second), Events: &seven, Samples: &zero},
			"link to central: down since 2026-01-02 03:03:20 UTC (45s ago), central last acknowledged an event 50s ago; not yet at central: 7 events, 0 samples"},
		{CentralLink{State: LinkUp, Since: now.Add(-time.Hour), Events: &zero, Samples: &zero, Peers: []PeerLink{
			{Peer: "paris-1", State: LinkUp, Since: now.Add(-time.Hour)}, {Peer: "paris-2", State: LinkDown, Since: now.Add(-time.Minute)}}},
			"link to central: up since 2026-01-02 02:04:05 UTC (1h0m0s ago), central has acknowledged no event yet; not yet at central: 0 events, 0 samples; members' links: paris-1 up since 2026-01-02 02:04:05 UTC (1h0m0s ago), paris-2 down since 2026-01-02 03:03:05 UTC (1m0s ago)"},
		{CentralLink{State: LinkUnknown},
			"link to central: unknown, central has acknowledged no event yet; not yet at central: unknown events, unknown samples"},
	} {
		if got := tt.l.Line(now); got != tt.want {
			t.Errorf("got  %q\nwant %q", got, tt.want)
		}
	}
}

// TestWriteTrapDrops: each poller that dropped trap packets, with its
// reasons sorted and the queue's drops last; pollers without drops left out.
func TestWriteTrapDrops(t *testing.T) {
	var b bytes.Buffer
	WriteTrapDrops(&b, []meshmon.PollerInfo{
		{Name: "p1", TrapsInvalid: map[string]uint64{"malformed": 10, "bad_auth": 3}, TrapsDropped: 2},
		{Name: "p2"},
		{Name: "p3", TrapsInvalid: map[string]uint64{"no_trap_oid": 1}},
	})
	want := "traps dropped by p1: bad_auth 3, malformed 10, queue_full 2\ntraps dropped by p3: no_trap_oid 1\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

// TestStatusReportText: the report of a site peer whose disk is full, and
// central's with no sites, as status prints them for people.
func TestStatusReportText(t *testing.T) {
	peer := PeerStatus{URL: "nats://127.0.0.1:4222", Server: "paris", Version: "2.15.3", RTT: "1ms"}
	var b bytes.Buffer
	full := StatusReport{Peer: peer, StoreFull: "insufficient storage"}
	full.Peer.Role = "site"
	if err := full.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	want := "site peer paris (nats-server 2.15.3) at nats://127.0.0.1:4222, rtt 1ms\nstore: insufficient storage\n" +
		"devices, poller group, pollers, link to central: unknown until the peer stores again (its pollers spool meanwhile)\n"
	if b.String() != want {
		t.Errorf("disk full: got\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	central := StatusReport{Peer: peer, Streams: []StreamInfo{{Name: "EVENTS", Messages: 3, Bytes: 300, FirstSeq: 1, LastSeq: 3, MaxAge: 24 * time.Hour, MaxBytes: -1}}}
	central.Peer.Role = "central"
	if err := central.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"central peer paris (nats-server 2.15.3)", "EVENTS", "no size limit", "SITE", "(no sites; 'meshmon site add NAME' adds one)"} {
		if !strings.Contains(b.String(), w) {
			t.Errorf("central: %q missing from\n%s", w, b.String())
		}
	}
	if strings.Contains(b.String(), "RIDES OUT") {
		t.Errorf("central: the ride-out column is a site's:\n%s", b.String())
	}
}
