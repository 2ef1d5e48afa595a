package bus

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// CentralLink is a site's link to central, as the site sees it.
type CentralLink struct {
	// State is "up" when central's JetStream answers over the link,
	// "down" when nothing at the site reaches it (no responders), and
	// "unknown" when the request got no answer in time or was refused.
	State string `json:"state"`
	// LastAck is when central last acknowledged a message of the site's
	// EVENTS (the source consumer's ack floor), LastDelivered when the
	// site last sent it one; the zero time when never.
	LastAck       time.Time `json:"last_ack,omitzero"`
	LastDelivered time.Time `json:"last_delivered,omitzero"`
	// Events and Samples are how many messages of the site's EVENTS and
	// METRICS central has not acknowledged (SourceBacklog); nil when the
	// credential may not read the source consumers.
	Events  *uint64 `json:"events_not_at_central"`
	Samples *uint64 `json:"samples_not_at_central"`
	// Since is when the link went into State, as the site's peers saw it
	// (Peers): up since the earliest of the peers up, down since the
	// latest of them, all down; the zero time when no peer said.
	Since time.Time `json:"since,omitzero"`
	// Peers is each site peer's own link, as it answered on
	// LinkStateSubject.
	Peers []PeerLink `json:"peers,omitempty"`
}

// PeerLink is one site peer's own link to central: up or down, since
// when (as that peer has watched it, every 100 ms, since it started).
type PeerLink struct {
	Peer  string    `json:"peer"`
	State string    `json:"state"`
	Since time.Time `json:"since"`
}

// LinkStateSubject is where each peer of site answers with its PeerLink.
func LinkStateSubject(site string) string { return "meshmon.link." + site + ".state" }

// linkStateMore is how long SiteCentralLink waits for more site peers
// after the first answered.
const linkStateMore = 250 * time.Millisecond

// PeerLinks asks the peers of site for their own links to central and
// returns the answers that came within linkAsk (waiting linkStateMore
// after the first), by peer name.
func PeerLinks(ctx context.Context, nc *nats.Conn, site string) []PeerLink {
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest(LinkStateSubject(site), inbox, nil); err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, linkAsk)
	defer cancel()
	var out []PeerLink
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			break
		}
		var l PeerLink
		if json.Unmarshal(m.Data, &l) != nil || l.Peer == "" {
			continue
		}
		out = append(out, l)
		if len(out) == 1 {
			var more context.CancelFunc
			ctx, more = context.WithTimeout(ctx, linkStateMore)
			defer more()
		}
	}
	slices.SortFunc(out, func(a, b PeerLink) int { return strings.Compare(a.Peer, b.Peer) })
	return out
}

// linkSince is when the site's link went into state, from its peers' own
// links (see CentralLink.Since).
func linkSince(state string, peers []PeerLink) time.Time {
	var since time.Time
	for _, l := range peers {
		switch {
		case state == LinkUp && l.State == LinkUp:
			if since.IsZero() || l.Since.Before(since) {
				since = l.Since
			}
		case state == LinkDown && l.State == LinkDown:
			if l.Since.After(since) {
				since = l.Since
			}
		case state == LinkDown:
			return time.Time{} // a peer says up: not all down
		}
	}
	return since
}

// Link states of CentralLink.
const (
	LinkUp      = "up"
	LinkDown    = "down"
	LinkUnknown = "unknown"
)

// linkAsk bounds how long SiteCentralLink waits for central to answer.
const linkAsk = time.Second

// SiteCentralLink reads, at a site, its link to central: whether central's
// JetStream answers, since when (PeerLinks), and what the source consumers central reads the
// site's streams through have not had acknowledged.
func SiteCentralLink(ctx context.Context, js jetstream.JetStream, site string) CentralLink {
	out := CentralLink{State: LinkUnknown}
	rctx, cancel := context.WithTimeout(ctx, linkAsk)
	_, err := js.Conn().RequestWithContext(rctx, "$JS."+HubDomain+".API.INFO", nil)
	cancel()
	switch {
	case err == nil:
		out.State = LinkUp
	case errors.Is(err, nats.ErrNoResponders):
		out.State = LinkDown
	}
	out.Peers = PeerLinks(ctx, js.Conn(), site)
	out.Since = linkSince(out.State, out.Peers)
	// A credential that may not read the consumers gets no answer: bound
	// the wait.
	ctx, cancel = context.WithTimeout(ctx, 3*linkAsk)
	defer cancel()
	for _, name := range []string{EventsStream, MetricsStream} {
		var info *jetstream.ConsumerInfo
		err := Retry(ctx, func(ctx context.Context) error {
			c, err := js.PushConsumer(ctx, name, SourceConsumer(name))
			if err != nil {
				return err
			}
			info = c.CachedInfo()
			return nil
		})
		if err != nil {
			continue
		}
		n := info.NumPending + uint64(info.NumAckPending)
		if name == EventsStream {
			out.Events = &n
			if info.AckFloor.Last != nil {
				out.LastAck = *info.AckFloor.Last
			}
			if info.Delivered.Last != nil {
				out.LastDelivered = *info.Delivered.Last
			}
		} else {
			out.Samples = &n
		}
	}
	return out
}

// SourceBacklog is how many messages of stream, at the site js reaches,
// central has not acknowledged through its source consumer: those not
// delivered yet and those delivered and not acknowledged.
func SourceBacklog(ctx context.Context, js jetstream.JetStream, stream string) (uint64, error) {
	c, err := js.PushConsumer(ctx, stream, SourceConsumer(stream))
	if err != nil {
		return 0, err
	}
	info := c.CachedInfo()
	return info.NumPending + uint64(info.NumAckPending), nil
}
