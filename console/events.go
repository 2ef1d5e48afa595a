package console

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
)

// eventRow is one event as the pages and the live stream show it.
type eventRow struct {
	Seq      uint64    `json:"seq,omitempty"`
	Time     time.Time `json:"time"`
	Tenant   string    `json:"tenant"`
	Site     string    `json:"site"`
	Device   string    `json:"device"`
	Kind     string    `json:"kind"`
	Check    string    `json:"check"`
	Severity string    `json:"severity"`
	State    string    `json:"state,omitempty"`
	Message  string    `json:"message"`
}

// rowOf decodes an event stored on subject (ev.<site>.<device>.<kind>)
// with the headers h; tenant, when set, is the tenant it was read from
// (the ops view), which wins over what the event says. An event that is
// not what its subject and its source say (bus.ReadEvent) is not shown:
// a poller's credential may publish any body on its site's subjects.
func rowOf(tenant string, seq uint64, subject string, h nats.Header, data []byte) (eventRow, bool) {
	var ev meshmon.Event
	if err := bus.ReadEvent(subject, h, data, &ev); err != nil {
		return eventRow{}, false
	}
	d := ev.Data
	if tenant == "" {
		tenant = d.Tenant
	}
	return eventRow{Seq: seq, Time: ev.Time, Tenant: tenant, Site: d.Site, Device: d.Device, Kind: d.Kind,
		Check: d.Check, Severity: d.Severity, State: d.State, Message: d.Message}, true
}

// eventFilter is what the events page and stream select.
type eventFilter struct {
	Tenant, Site, Device, Kind, Severity string
	Since                                time.Time
	SinceText                            string
}

// severities are the severities an event filter takes.
var severities = []string{meshmon.SeverityCritical, meshmon.SeverityMajor, meshmon.SeverityWarning, meshmon.SeverityInfo, meshmon.SeverityCleared}

// parseFilter reads an event filter from a query; the error names the
// field and the rule, and wraps errBadInput.
func parseFilter(q url.Values, now time.Time) (eventFilter, error) {
	f := eventFilter{Tenant: q.Get("tenant"), Site: q.Get("site"), Device: q.Get("device"), Kind: q.Get("kind"), Severity: q.Get("severity"), SinceText: q.Get("since")}
	for _, n := range [][2]string{{"tenant", f.Tenant}, {"site", f.Site}, {"device", f.Device}} {
		if n[1] == "" {
			continue
		}
		if err := meshmon.ValidateName(n[0], n[1]); err != nil {
			return f, fmt.Errorf("%w: %v", errBadInput, err)
		}
	}
	if f.Kind != "" && !slices.Contains(meshmon.Kinds, f.Kind) {
		return f, fmt.Errorf("%w: kind %q is not one of %s", errBadInput, f.Kind, strings.Join(meshmon.Kinds, ", "))
	}
	if f.Severity != "" && !slices.Contains(severities, f.Severity) {
		return f, fmt.Errorf("%w: severity %q is not one of %s", errBadInput, f.Severity, strings.Join(severities, ", "))
	}
	if f.SinceText != "" {
		t, err := parseSince(f.SinceText, now)
		if err != nil {
			return f, err
		}
		f.Since = t
	}
	return f, nil
}

// parseSince reads a start time: an age (15m, 2h), an RFC 3339 time, or
// the browser's datetime-local form (UTC).
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02T15:04:05", time.DateTime} {
		if t, err := time.Parse(layout, s); err == nil {
			if t.After(now) {
				return time.Time{}, fmt.Errorf("%w: since %q is in the future", errBadInput, s)
			}
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%w: since %q is neither an age like 15m nor a time like 2026-12-03T09:00 (UTC)", errBadInput, s)
}

// visible says errNotFound for a tenant filter naming another tenant than
// a tenant user's own: its account holds no other tenant's events (NATS
// would deliver none), and the answer says so rather than wait. A central
// without tenants has one account, whose user has no tenant.
func (f eventFilter) visible(who viewer) error {
	if who.Ops || who.Tenant == "" || f.Tenant == "" || f.Tenant == who.Tenant {
		return nil
	}
	return fmt.Errorf("tenant %s: %w with this credential", f.Tenant, errNotFound)
}

// match reports whether a row passes the filter's severity (the subject
// carries the rest).
func (f eventFilter) match(r eventRow) bool {
	return f.Severity == "" || r.Severity == f.Severity
}

// liveSubject is the subject the session's live feed subscribes to: the
// stored events of its tenant's account, or the ops account's imports of
// every tenant's.
func (f eventFilter) liveSubject(who viewer) string {
	ev := bus.EventFilter(f.Site, f.Device, f.Kind)
	if who.Ops {
		t := f.Tenant
		if t == "" {
			t = "*"
		}
		return "tenants." + t + "." + ev
	}
	return bus.StoredPrefix + ev
}

// storedSubject is the subject a live event was stored on: the stream's
// re-publish names it (Nats-Subject); else it is the live subject without
// its prefix (stored., or the ops view's tenants.<tenant>.).
func storedSubject(m *nats.Msg) string {
	if s := m.Header.Get(jetstream.SubjectHeader); s != "" {
		return s
	}
	if rest, ok := strings.CutPrefix(m.Subject, "tenants."); ok {
		_, s, _ := strings.Cut(rest, ".")
		return s
	}
	return strings.TrimPrefix(m.Subject, bus.StoredPrefix)
}

// query is the filter as a query string, for links and the stream.
func (f eventFilter) query() string {
	q := url.Values{}
	for k, v := range map[string]string{"tenant": f.Tenant, "site": f.Site, "device": f.Device, "kind": f.Kind, "severity": f.Severity, "since": f.SinceText} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q.Encode()
}

// eventsData is what the events page shows.
type eventsData struct {
	Filter     eventFilter
	Query      string
	Kinds      []string
	Severities []string
	Notice     string
	// Ops: the ops account's view, whose rows do not link to device
	// pages (it reads no tenant's streams).
	Ops bool
}

// eventsPage shows the filter form; its script reads /events/stream.
func (s *Server) eventsPage(w http.ResponseWriter, r *http.Request, se *session) {
	f, err := parseFilter(r.URL.Query(), s.cfg.Now())
	if err == nil {
		err = f.visible(se.who)
	}
	if err != nil {
		s.fail(w, se, err)
		return
	}
	d := eventsData{Filter: f, Query: f.query(), Kinds: meshmon.Kinds, Severities: severities, Ops: se.who.Ops}
	s.renderFor(w, se, http.StatusOK, "events", "events", "Events", d)
}

// sseHeartbeat is how often an idle stream sends a comment, so proxies
// keep it open and a dead client is noticed.
const sseHeartbeat = 15 * time.Second

// sseRetry is how long a browser waits before it reconnects a dropped
// stream (the SSE retry field, in milliseconds).
const sseRetry = 1000

// liveBuffer is how many live events may wait for a slow browser; past
// it the subscription drops them and the stream ends, so that the
// browser reconnects and replays from its last event.
const liveBuffer = 1024

// sseWriter writes server-sent events and flushes each.
type sseWriter struct {
	w http.ResponseWriter
	f http.Flusher
}

// send writes one event; id, when not empty, becomes the browser's
// Last-Event-ID.
func (sw sseWriter) send(event, id string, v any) error {
	b, _ := json.Marshal(v)
	var err error
	if id != "" {
		_, err = fmt.Fprintf(sw.w, "id: %s\nevent: %s\ndata: %s\n\n", id, event, b)
	} else {
		_, err = fmt.Fprintf(sw.w, "event: %s\ndata: %s\n\n", event, b)
	}
	if err == nil {
		sw.f.Flush()
	}
	return err
}

// eventStream sends events as server-sent events: with since, the
// replay from then first, then every event stored from now on, as
// central stores it. Each event carries the page's cursor as its id (the
// stream sequence it was stored under; for the ops credential, each
// tenant's), and so does "live" (where the streams stood): a browser that
// reconnects sends the last one back (Last-Event-ID) and gets what was
// stored after it, then live, with nothing lost and nothing twice.
func (s *Server) eventStream(w http.ResponseWriter, r *http.Request, se *session) {
	f, err := parseFilter(r.URL.Query(), s.cfg.Now())
	var resume cursor
	if err == nil {
		resume, err = parseCursor(r.Header.Get("Last-Event-ID"))
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err := f.visible(se.who); err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming is not supported here", http.StatusInternalServerError)
		return
	}
	// Subscribe first, so that nothing stored between the replay's end
	// and the subscription is missed; what both deliver is sent once.
	live := make(chan *nats.Msg, liveBuffer)
	sub, err := se.nc.ChanSubscribe(f.liveSubject(se.who), live)
	if err != nil {
		http.Error(w, "subscribe: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer sub.Unsubscribe()
	// The server takes the subscription before "live" is said: what is
	// stored from then on reaches the page. Where each stream stands
	// now: the events up to there were stored before the page went live
	// (a replay sends them), the rest come live.
	var feeds []feed
	var mark cursor
	fctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	err = se.nc.FlushWithContext(fctx)
	if err == nil {
		feeds, mark, err = s.feeds(fctx, se, f)
	}
	cancel()
	if err != nil {
		http.Error(w, "subscribe: "+err.Error(), http.StatusBadGateway)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	sw := sseWriter{w: w, f: flusher}
	fmt.Fprintf(w, "retry: %d\n\n", sseRetry)
	if resume != nil || !f.Since.IsZero() {
		if feeds == nil {
			sw.send("notice", "", "this console reads no tenant's stream for the ops credential (central without accounts); showing live events")
		} else if !s.replayFeeds(r.Context(), se, f, feeds, resume, mark, sw) {
			return
		}
	}
	sw.send("live", mark.String(), "live")
	s.streamLive(r.Context(), se, f, sub, live, mark, sw)
}

// replayFeeds replays each feed from where resume says (the rest of the
// stream after it), or else from the filter's since, and moves mark past
// what it sent. It returns false when the stream must end: a resume
// that could not replay everything (the browser reconnects from where
// it stands and tries again, rather than go live past what it missed).
func (s *Server) replayFeeds(ctx context.Context, se *session, f eventFilter, feeds []feed, resume, mark cursor, sw sseWriter) bool {
	// at is where the page stands as the replay goes: what the browser
	// would resume from if it dropped now.
	at := resume.clone()
	for _, fd := range feeds {
		opts := bus.TailOptions{Subject: bus.EventFilter(f.Site, f.Device, f.Kind), Since: f.Since}
		from, resuming := resume[fd.tenant]
		switch {
		case resuming:
			opts.StartSeq = from + 1
		case f.Since.IsZero():
			continue // a tenant new since the page went live: live on
		}
		last, err := s.replay(ctx, se, fd, f, opts, at, sw)
		if err != nil && resuming {
			sw.send("notice", "", "resume: "+err.Error()+"; reconnecting")
			return false
		}
		if err != nil {
			sw.send("notice", "", "replay: "+err.Error())
		}
		mark[fd.tenant] = max(mark[fd.tenant], last)
	}
	return true
}

// replay sends the events of one feed the filter selects from where opts
// starts, each with the cursor at (moved to it) as its id; it returns the
// stream sequence of the last one it passed.
func (s *Server) replay(ctx context.Context, se *session, fd feed, f eventFilter, opts bus.TailOptions, at cursor, sw sseWriter) (uint64, error) {
	if err := se.acquire(ctx); err != nil {
		return 0, err
	}
	defer se.release()
	js, err := s.jetStream(fd)
	if err != nil {
		return 0, err
	}
	var last uint64
	err = bus.Tail(ctx, js, opts, func(m bus.TailMsg) error {
		last = m.Seq
		if r, ok := rowOf(fd.tenant, m.Seq, m.Subject, m.Header, m.Data); ok && f.match(r) {
			at[fd.tenant] = m.Seq
			return sw.send("ev", at.String(), r)
		}
		return nil
	})
	return last, err
}

// streamLive sends each live event the filter selects until the client
// goes; events up to mark (sent by the replay, or stored before the page
// went live) are skipped. When the subscription drops events (the
// browser reads slower than central stores) the stream ends: the
// browser reconnects from its last event and replays the rest.
func (s *Server) streamLive(ctx context.Context, se *session, f eventFilter, sub *nats.Subscription, live <-chan *nats.Msg, mark cursor, sw sseWriter) {
	beat := time.NewTicker(sseHeartbeat)
	defer beat.Stop()
	at := mark.clone()
	for {
		select {
		case <-ctx.Done():
			return
		case <-beat.C:
			if sw.send("beat", "", s.cfg.Now().UTC()) != nil {
				return
			}
		case m := <-live:
			if n, _ := sub.Dropped(); n > 0 && len(mark) > 0 {
				sw.send("notice", "", "the page fell behind; catching up")
				return
			}
			seq, _ := strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64)
			tenant := ""
			if se.who.Ops {
				// tenants.<tenant>.ev...: the import's prefix names it.
				tenant, _, _ = strings.Cut(strings.TrimPrefix(m.Subject, "tenants."), ".")
			}
			if seq != 0 && seq <= mark[tenant] {
				continue
			}
			r, ok := rowOf(tenant, seq, storedSubject(m), m.Header, m.Data)
			if !ok || !f.match(r) {
				continue
			}
			id := ""
			if _, known := mark[tenant]; known && seq != 0 {
				// A tenant whose stream the page reads: its cursor moves.
				at[tenant] = seq
				id = at.String()
			}
			if sw.send("ev", id, r) != nil {
				return
			}
		}
	}
}
