package console

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestParseFilter(t *testing.T) {
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		query string
		since time.Time
		bad   string
	}{
		{query: "", since: time.Time{}},
		{query: "since=15m", since: now.Add(-15 * time.Minute)},
		{query: "since=2026-12-03T09:00", since: time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)},
		{query: "since=2026-12-03T09:00:00Z", since: time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)},
		{query: "since=-5m", bad: "since"},
		{query: "since=2026-12-04T09:00", bad: "in the future"},
		{query: "tenant=A", bad: "tenant"},
		{query: "site=a.b", bad: "site"},
		{query: "device=" + url.QueryEscape("d>"), bad: "device"},
		{query: "kind=reboots", bad: "kind"},
		{query: "severity=CRITICAL", bad: "severity"},
	} {
		q, _ := url.ParseQuery(tc.query)
		f, err := parseFilter(q, now)
		if tc.bad != "" {
			if !errors.Is(err, errBadInput) || !strings.Contains(err.Error(), tc.bad) {
				t.Errorf("%s: %v, want a bad input naming %s", tc.query, err, tc.bad)
			}
			continue
		}
		if err != nil || !f.Since.Equal(tc.since) {
			t.Errorf("%s: since %v, %v; want %v", tc.query, f.Since, err, tc.since)
		}
	}
}

func TestLiveSubject(t *testing.T) {
	f := eventFilter{Site: "s1", Kind: "if_down"}
	if got := f.liveSubject(viewer{Tenant: "acme"}); got != "stored.ev.s1.*.if_down" {
		t.Errorf("tenant's live subject %q", got)
	}
	if got := f.liveSubject(viewer{Ops: true}); got != "tenants.*.ev.s1.*.if_down" {
		t.Errorf("ops live subject %q", got)
	}
	f.Tenant = "beta"
	if got := f.liveSubject(viewer{Ops: true}); got != "tenants.beta.ev.s1.*.if_down" {
		t.Errorf("ops live subject of one tenant %q", got)
	}
}

func TestChartsEscapeText(t *testing.T) {
	now := time.Now()
	svg := string(lineChart("interface <script>alert(1)</script> traffic", "bps", now.Add(-time.Hour), now,
		[]series{{Name: `"><img src=x>`, Points: []point{{now.Add(-time.Minute), 1e6}, {now, 2e6}}}}, 640, 140))
	if strings.Contains(svg, "<script>") || strings.Contains(svg, "<img") {
		t.Fatalf("chart text not escaped:\n%s", svg)
	}
	if !strings.Contains(svg, "<polyline") || !strings.Contains(svg, "2.0 Mb/s") {
		t.Fatalf("chart:\n%s", svg)
	}
	if empty := string(lineChart("uptime", "s", now.Add(-time.Hour), now, []series{{Name: "uptime"}}, 640, 140)); !strings.Contains(empty, "no samples") {
		t.Fatalf("empty chart:\n%s", empty)
	}
}

func TestCursor(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want cursor
		bad  bool
	}{
		{id: "", want: nil},
		{id: "812", want: cursor{"": 812}},
		{id: "acme:812,beta:40", want: cursor{"acme": 812, "beta": 40}},
		{id: "beta:0", want: cursor{"beta": 0}},
		{id: "-1", bad: true},
		{id: "abc", bad: true},
		{id: "acme:", bad: true},
		{id: ":5", bad: true},
		{id: "acme:5,,beta:1", bad: true},
		{id: "acme:x", bad: true},
	} {
		c, err := parseCursor(tc.id)
		if tc.bad {
			if !errors.Is(err, errBadInput) || !strings.Contains(err.Error(), "Last-Event-ID") {
				t.Errorf("%q: %v, want a bad input naming Last-Event-ID", tc.id, err)
			}
			continue
		}
		if err != nil || len(c) != len(tc.want) {
			t.Errorf("%q: %v %v, want %v", tc.id, c, err, tc.want)
			continue
		}
		for k, v := range tc.want {
			if c[k] != v {
				t.Errorf("%q: %v, want %v", tc.id, c, tc.want)
			}
		}
		if tc.id != "" && c.String() != tc.id {
			t.Errorf("%q reads back as %q", tc.id, c.String())
		}
	}
}
