package console

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/tenancy"
)

// feed is one EVENTS stream an events page reads: the tenant's own,
// through the session's JetStream (a tenant's credential; tenant empty),
// or a tenant's through the ops account's imports of its replay API
// (tenancy.OpsAPIPrefix): what the ops credential may read of it is what
// those imports carry, stream info, a message get and consumers of the
// ops user's own names (tenancy.OpsConsumerNames), and nothing else.
type feed struct {
	tenant string
	js     jetstream.JetStream
}

// feeds are the streams the session's events page replays: its own, or
// for the ops credential every tenant its account imports (only f's
// tenant, when set). None for the ops credential at a central whose
// accounts the console cannot read (AccountJWT unset).
func (s *Server) feeds(se *session, f eventFilter) ([]feed, error) {
	if !se.who.Ops {
		return []feed{{js: se.js}}, nil
	}
	tenants, err := s.opsTenants(se.who.Account)
	if err != nil || tenants == nil {
		return nil, err
	}
	if f.Tenant != "" {
		if !slices.Contains(tenants, f.Tenant) {
			return nil, fmt.Errorf("tenant %s: %w with this credential", f.Tenant, errNotFound)
		}
		tenants = []string{f.Tenant}
	}
	out := make([]feed, 0, len(tenants))
	for _, t := range tenants {
		js, err := jetstream.NewWithAPIPrefix(se.nc, tenancy.OpsAPIPrefix(t))
		if err != nil {
			return nil, err
		}
		out = append(out, feed{tenant: t, js: js})
	}
	return out, nil
}

// opsTenants are the tenants whose replay API the ops account imports,
// sorted, as its account JWT (central's) lists them; nil when the
// console cannot read accounts.
func (s *Server) opsTenants(account string) ([]string, error) {
	if s.cfg.AccountJWT == nil || account == "" {
		return nil, nil
	}
	tok, err := s.cfg.AccountJWT(account)
	if err != nil {
		return nil, fmt.Errorf("the ops account's JWT: %w", err)
	}
	ac, err := jwt.DecodeAccountClaims(tok)
	if err != nil {
		return nil, fmt.Errorf("the ops account's JWT: %w", err)
	}
	out := []string{}
	for _, im := range ac.Imports {
		if t, ok := tenancy.OpsTenant(string(im.LocalSubject)); ok && im.Type == jwt.Service {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
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
