package console_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/alarm"
	"github.com/meshmon/meshmon/bus"
)

func TestAlarmsPage(t *testing.T) {
	f := newFixture(t, false)
	c := f.client(t)
	f.login(t, c)
	nc, err := f.peer.InProcessConn()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: alarm.Bucket})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, a := range []alarm.Alarm{
		{ID: alarm.ID("s1", "r1", "if.2"), Site: "s1", Device: "r1", Check: "if.2", Kind: meshmon.KindIfDown, Severity: meshmon.SeverityWarning, State: alarm.StateOpen, Message: "eth1 down", LastSeen: now, SymptomOf: "s1.r0.icmp"},
		{ID: alarm.ID("s1", "r0", "icmp"), Site: "s1", Device: "r0", Check: "icmp", Kind: meshmon.KindNodeDown, Severity: meshmon.SeverityCritical, State: alarm.StateOpen, Message: "<b>r0</b> down", LastSeen: now.Add(-time.Minute), Acked: true, AckedBy: "alice"},
		{ID: alarm.ID("s1", "r2", "snmp"), Site: "s1", Device: "r2", Check: "snmp", Kind: meshmon.KindSNMPUnreachable, Severity: meshmon.SeverityMajor, State: alarm.StateCleared, LastSeen: now},
	} {
		b, _ := json.Marshal(a)
		if _, err := kv.Put(ctx, a.ID, b); err != nil {
			t.Fatal(err)
		}
	}
	status, body := get(t, c, f.srv.URL+"/alarms")
	if status != http.StatusOK {
		t.Fatalf("alarms: %d\n%s", status, body)
	}
	crit, warn := strings.Index(body, `data-id="s1.r0.icmp"`), strings.Index(body, `data-id="s1.r1.if_2"`)
	if crit < 0 || warn < crit {
		t.Fatalf("want the critical alarm, then the warning:\n%s", body)
	}
	for _, want := range []string{"yes (alice)", "<td>s1.r0.icmp</td>", "&lt;b&gt;r0&lt;/b&gt; down"} {
		if !strings.Contains(body, want) {
			t.Errorf("alarms page lacks %q", want)
		}
	}
	if strings.Contains(body, "s1.r2.snmp") {
		t.Error("the alarms page lists a cleared alarm")
	}
}

func TestEventStream(t *testing.T) {
	f := newFixture(t, false)
	c := f.client(t)
	f.login(t, c)
	c.Timeout = 0
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, f.srv.URL+"/events/stream?site=s1&severity=major", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	lines := bufio.NewScanner(resp.Body)
	next := func() (event, data string) {
		for lines.Scan() {
			l := lines.Text()
			switch {
			case strings.HasPrefix(l, "event: "):
				event = l[len("event: "):]
			case strings.HasPrefix(l, "data: "):
				data = l[len("data: "):]
			case l == "" && event == "beat":
				event = "" // the heartbeat of an idle stream
			case l == "" && event != "":
				return event, data
			}
		}
		t.Fatalf("the stream ended: %v", lines.Err())
		return "", ""
	}
	if ev, _ := next(); ev != "live" {
		t.Fatalf("first event %q, want live", ev)
	}
	// As central republishes what it stores: another site's, then an info
	// event of s1's, are not selected; nor one on s1's subject whose body
	// says s2 (a poller's credential may publish any body on its site's
	// subjects); a major one of s1's is.
	nc, err := f.peer.InProcessConn()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for i, e := range []meshmon.EventData{
		{Site: "s2", Device: "d1", Kind: meshmon.KindIfDown, Severity: meshmon.SeverityMajor, Message: "other site"},
		{Site: "s1", Device: "d1", Kind: meshmon.KindIfUp, Severity: meshmon.SeverityInfo, Message: "info"},
		{Site: "s2", Device: "d1", Kind: meshmon.KindIfDown, Severity: meshmon.SeverityMajor, Message: "forged"},
		{Site: "s1", Device: "d1", Kind: meshmon.KindIfDown, Severity: meshmon.SeverityMajor, Message: "<script>x</script>"},
	} {
		b, _ := json.Marshal(meshmon.Event{Time: time.Now(), Data: e})
		site := e.Site
		if e.Message == "forged" {
			site = "s1"
		}
		if err := nc.Publish("stored.ev."+site+"."+e.Device+"."+e.Kind, b); err != nil {
			t.Fatal(err, i)
		}
	}
	ev, data := next()
	var row struct{ Device, Kind, Severity, Message string }
	if ev != "ev" || json.Unmarshal([]byte(data), &row) != nil || row.Kind != meshmon.KindIfDown || row.Message != "<script>x</script>" {
		t.Fatalf("got %s %s, want s1's if_down", ev, data)
	}
}

// sseEvent is one server-sent event.
type sseEvent struct{ id, event, data string }

// sseStream opens the event stream at path with the Last-Event-ID
// lastID (none when empty); next reads its events, heartbeats left out.
func sseStream(t *testing.T, ctx context.Context, c *http.Client, u, lastID string) (*http.Response, func() sseEvent) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(resp.Body)
	return resp, func() sseEvent {
		t.Helper()
		var e sseEvent
		for lines.Scan() {
			l := lines.Text()
			switch {
			case strings.HasPrefix(l, "id: "):
				e.id = l[len("id: "):]
			case strings.HasPrefix(l, "event: "):
				e.event = l[len("event: "):]
			case strings.HasPrefix(l, "data: "):
				e.data = l[len("data: "):]
			case l == "" && e.event == "beat":
				e = sseEvent{}
			case l == "" && e.event != "":
				return e
			}
		}
		t.Fatalf("the stream ended: %v", lines.Err())
		return e
	}
}

// TestEventStreamResume: a stream that drops and reconnects with the
// Last-Event-ID the browser kept gets what central stored while it was
// away, then live, with nothing lost and nothing twice.
func TestEventStreamResume(t *testing.T) {
	f := newFixture(t, false)
	c := f.client(t)
	f.login(t, c)
	c.Timeout = 0
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc, err := f.peer.InProcessConn()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	// Central's EVENTS takes no subjects of its own (it sources the
	// sites); here it takes ev.> too, so that the test stores events
	// as sourcing would, republished on the stored feed.
	st, err := js.Stream(ctx, bus.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.Subjects = []string{bus.EventsSubjects}
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	n := 0
	store := func(kind string) uint64 {
		t.Helper()
		n++
		b, _ := json.Marshal(meshmon.Event{Time: time.Now(), Data: meshmon.EventData{Site: "s1", Device: "d1", Kind: kind,
			Severity: meshmon.SeverityMajor, Message: fmt.Sprintf("event %d", n)}})
		ack, err := js.Publish(ctx, "ev.s1.d1."+kind, b)
		if err != nil {
			t.Fatal(err)
		}
		return ack.Sequence
	}
	// Another site's event, not selected, between them.
	other := func() {
		b, _ := json.Marshal(meshmon.Event{Time: time.Now(), Data: meshmon.EventData{Site: "s2", Device: "d9", Kind: meshmon.KindIfDown, Severity: meshmon.SeverityMajor}})
		if _, err := js.Publish(ctx, "ev.s2.d9.if_down", b); err != nil {
			t.Fatal(err)
		}
	}
	before := store(meshmon.KindIfDown)
	sctx, drop := context.WithCancel(ctx)
	resp, next := sseStream(t, sctx, c, f.srv.URL+"/events/stream?site=s1", "")
	if e := next(); e.event != "live" || e.id != fmt.Sprint(before) {
		t.Fatalf("first %+v, want live with id %d (the stream's last sequence)", e, before)
	}
	s1, s2 := store(meshmon.KindIfDown), store(meshmon.KindIfUp)
	for _, want := range []uint64{s1, s2} {
		if e := next(); e.event != "ev" || e.id != fmt.Sprint(want) {
			t.Fatalf("got %+v, want the event of sequence %d", e, want)
		}
	}
	// The connection drops; central stores on.
	drop()
	resp.Body.Close()
	other()
	missed := []uint64{store(meshmon.KindIfDown), store(meshmon.KindIfUp)}
	other()

	resp, next = sseStream(t, ctx, c, f.srv.URL+"/events/stream?site=s1", fmt.Sprint(s2))
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("resume: %d", resp.StatusCode)
	}
	for _, want := range missed {
		if e := next(); e.event != "ev" || e.id != fmt.Sprint(want) {
			t.Fatalf("resumed with %+v, want the missed event of sequence %d", e, want)
		}
	}
	e := next()
	if e.event != "live" {
		t.Fatalf("after the missed events %+v, want live", e)
	}
	after := store(meshmon.KindIfDown)
	if e := next(); e.event != "ev" || e.id != fmt.Sprint(after) {
		t.Fatalf("live after the resume: %+v, want the event of sequence %d only", e, after)
	}

	// A Last-Event-ID that is not a sequence is refused.
	bad, _ := sseStream(t, ctx, c, f.srv.URL+"/events/stream", "abc")
	b, _ := io.ReadAll(bad.Body)
	bad.Body.Close()
	if bad.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "Last-Event-ID") {
		t.Fatalf("a bad Last-Event-ID: %d %s", bad.StatusCode, b)
	}
}
