package console

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/bus"
)

// TenantEvents reads the tenants' EVENTS streams at central, for the ops
// credential's events page: the ops account imports the tenants' live
// events only, and reads none of their streams (its JWT would otherwise
// grow with every tenant). A central peer provides it through its own
// connection in each tenant's account (peer.Peer.TenantEvents); the
// console reads EVENTS with it for a session of the ops credential only,
// and nothing else.
type TenantEvents interface {
	// OpsAccount is the ops account's public key: only a session of
	// one of its users reads the tenants' streams.
	OpsAccount() string
	// Tenants are the tenants whose EVENTS stream holds events, each
	// with the stream's last sequence as this central peer holds it.
	Tenants() (map[string]uint64, error)
	// JetStream reaches the tenant's streams at central.
	JetStream(tenant string) (jetstream.JetStream, error)
}

// feed is one EVENTS stream an events page reads: the tenant's own,
// through the session's JetStream (a tenant's credential; tenant empty),
// or, for the ops credential, a tenant's through central's
// (Config.Tenants; js nil until a replay reads it).
type feed struct {
	tenant string
	js     jetstream.JetStream
}

// feeds are the streams the session's events page replays, and where
// each stands (its last sequence), read once the page's live subscription
// is in place: its own, or for the ops credential every tenant's that
// holds events (only f's tenant, when set), from one look at central's
// streams. None for the ops credential at a central without accounts
// (Tenants unset), nor for a credential that looks like the ops account's
// (no tenant role) but is another account's: central, not the
// credential, reads the tenants' streams here, so the account decides, as
// central authenticated it at login.
func (s *Server) feeds(ctx context.Context, se *session, f eventFilter) ([]feed, cursor, error) {
	mark := cursor{}
	if !se.who.Ops {
		last, err := lastSeq(ctx, se.js)
		if err != nil {
			return nil, nil, err
		}
		mark[""] = last
		return []feed{{js: se.js}}, mark, nil
	}
	if s.cfg.Tenants == nil || se.who.Account == "" || se.who.Account != s.cfg.Tenants.OpsAccount() {
		return nil, mark, nil
	}
	lasts, err := s.cfg.Tenants.Tenants()
	if err != nil {
		return nil, nil, fmt.Errorf("the tenants' streams: %w", err)
	}
	var out []feed
	for t, last := range lasts {
		if f.Tenant == "" || t == f.Tenant {
			out = append(out, feed{tenant: t})
			mark[t] = last
		}
	}
	slices.SortFunc(out, func(a, b feed) int { return strings.Compare(a.tenant, b.tenant) })
	return out, mark, nil
}

// jetStream is the JetStream the feed's stream is read with.
func (s *Server) jetStream(fd feed) (jetstream.JetStream, error) {
	if fd.js != nil {
		return fd.js, nil
	}
	js, err := s.cfg.Tenants.JetStream(fd.tenant)
	if err != nil {
		return nil, fmt.Errorf("tenant %s's stream: %w", fd.tenant, err)
	}
	return js, nil
}

// cursor is where an events page stands in each stream it reads: the
// sequence of the last event it was sent (or that the stream had reached
// when the page went live), by tenant ("" for a tenant's own stream). It
// is the SSE id: a browser that reconnects sends it back as
// Last-Event-ID.
type cursor map[string]uint64

// String is the cursor as an SSE id: "812" for a tenant's own stream,
// "acme:812,beta:40" for the ops credential's.
func (c cursor) String() string {
	if len(c) == 1 {
		if n, ok := c[""]; ok {
			return strconv.FormatUint(n, 10)
		}
	}
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s:%d", k, c[k])
	}
	return b.String()
}

// parseCursor reads a Last-Event-ID; empty gives nil (a first
// connection). The error wraps errBadInput.
func parseCursor(s string) (cursor, error) {
	if s == "" {
		return nil, nil
	}
	bad := fmt.Errorf("%w: Last-Event-ID %q is not a position in the events streams (a sequence, or tenant:sequence,...)", errBadInput, s)
	if n, err := strconv.ParseUint(s, 10, 64); err == nil {
		return cursor{"": n}, nil
	}
	c := cursor{}
	for part := range strings.SplitSeq(s, ",") {
		t, n, ok := strings.Cut(part, ":")
		seq, err := strconv.ParseUint(n, 10, 64)
		if !ok || err != nil || t == "" || len(c) >= 10000 {
			return nil, bad
		}
		c[t] = seq
	}
	return c, nil
}

// clone is a copy of c (never nil).
func (c cursor) clone() cursor {
	out := make(cursor, len(c))
	for k, v := range c {
		out[k] = v
	}
	return out
}

// lastSeq is the EVENTS stream's last sequence, as its leader says.
func lastSeq(ctx context.Context, js jetstream.JetStream) (uint64, error) {
	st, err := js.Stream(ctx, bus.EventsStream)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", bus.EventsStream, err)
	}
	return st.CachedInfo().State.LastSeq, nil
}
