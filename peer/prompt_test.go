package peer

import (
	"fmt"
	"testing"
	"time"

	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/eventually"
)

// TestStallAnswerPromptsConsumer: a silent cut shorter than the link's
// pings takes a site's deliveries and its consumer's flow-control request
// with it, and the link is replaced, so the keeper never sees it down.
// Once the link is back, central answers the stall the consumer's
// heartbeat names; the site's keeper then prompts the consumer (it raises
// its limit by one, and the consumer asks for flow control at once rather
// than at its next heartbeat) and sets the limit back once the consumer is
// under it. Central gets every event once.
func TestStallAnswerPromptsConsumer(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	cjs := peerJS(t, startPeer(t, centralConfig(t, "c1")))
	join, px := joinViaProxy(t, cjs, "paris")
	var logs logWatch
	paris := peerJS(t, startPeerLog(t, siteConfig(t, "paris", join), &logs))
	publishSite(t, paris, "paris", 0, 100)
	waitCount(t, cjs, "paris", 100, 20*time.Second)
	consumer, err := paris.PushConsumer(ctx, bus.EventsStream, bus.SourceConsumer(bus.EventsStream))
	if err != nil {
		t.Fatal(err)
	}
	limit := consumer.CachedInfo().Config.MaxAckPending

	// The cut: the consumer delivers its window into it and, at its
	// limit, asks for flow control there too.
	const n = 15_000
	px.Drop(true)
	publishSite(t, paris, "paris", 100, n)
	eventually.NoError(t, 20*time.Second, "the consumer at its limit in the cut", func() error {
		info, err := consumer.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumAckPending < limit {
			return fmt.Errorf("%d deliveries await central, want %d", info.NumAckPending, limit)
		}
		return nil
	})
	if err := logs.has("keeping the source consumer"); err == nil {
		t.Fatal("the keeper kept the consumer: the cut was seen, the test shows nothing")
	}
	px.Drop(false)

	waitCount(t, cjs, "paris", 100+n, 30*time.Second)
	eventually.NoError(t, 10*time.Second, "the keeper's prompt", func() error {
		return logs.has("the source consumer asks for flow control at once")
	})
	eventually.NoError(t, 10*time.Second, "the consumer's limit set back", func() error {
		info, err := consumer.Info(ctx)
		if err != nil {
			return err
		}
		if got := info.Config.MaxAckPending; got != limit {
			return fmt.Errorf("MaxAckPending %d, want %d", got, limit)
		}
		return nil
	})
}
