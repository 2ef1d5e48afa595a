package bus

import (
	"context"
	"errors"
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
// JetStream answers, and what the source consumers central reads the
// site's streams through have not had acknowledged.
func SiteCentralLink(ctx context.Context, js jetstream.JetStream) CentralLink {
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
