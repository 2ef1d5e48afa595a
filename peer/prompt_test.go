package peer

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/internal/wan"
)

// TestStallAnswerPromptsConsumer: a silent cut shorter than the link's
// pings takes a site's deliveries and its consumer's flow-control request
// with it, and the link is replaced, so the keeper never sees it down.
// Once the link is back, central answers the stall the consumer's
// heartbeat names; the site's keeper then prompts the consumer (it raises
// its limit by one, and the consumer asks for flow control at once rather
// than at its next heartbeat) and sets the limit back once the consumer is
// under it. Central gets every event once. The keeper's tap, which
// answers the lost request at central's reset and so spares most such
// stalls (TestResetAnswersRequestLostInCut), is off here.
func TestStallAnswerPromptsConsumer(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	cjs := peerJS(t, startPeer(t, centralConfig(t, "c1")))
	join, px := joinViaProxy(t, cjs, "paris")
	var logs logWatch
	site, err := New(siteConfig(t, "paris", join), slog.New(&logs))
	if err != nil {
		t.Fatal(err)
	}
	site.untapped = true
	if err := site.Start(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(site.Close)
	paris := peerJS(t, site)
	consumer, limit := loseRequestInCut(t, cjs, paris, paris, px, "paris", &logs)
	px.Drop(false)

	waitCount(t, cjs, "paris", 100+cutEvents, 30*time.Second)
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

// TestResetAnswersRequestLostInCut: a silent cut shorter than the link's
// pings takes the consumer's window and its flow-control request with it.
// When central resets the consumer after the link returns, the site's
// keeper, which tapped the request, answers it at once: the reset consumer
// does not wait for its next heartbeat. Central gets every event once. In
// one account, and in operator mode, where the keeper acts as the site's
// upkeep user.
func TestResetAnswersRequestLostInCut(t *testing.T) {
	for _, operator := range []bool{false, true} {
		t.Run(map[bool]string{false: "one account", true: "operator mode"}[operator], func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			var cjs, publish, upkeep jetstream.JetStream
			var cfg Config
			var px *wan.Proxy
			site := "lyon"
			if operator {
				var members []Config
				var publisher func(*Peer) jetstream.JetStream
				members, cjs, publisher = operatorSite(t, ctx)
				site, cfg = "paris", members[0]
				cfg.Name = "paris-1"
				var err error
				if px, err = wan.NewProxy(strings.TrimPrefix(cfg.Central[0], "nats-leaf://")); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(px.Close)
				cfg.Central = []string{"nats-leaf://" + px.Addr()}
				var logs logWatch
				p := startPeerLog(t, cfg, &logs)
				publish = publisher(p)
				nc, err := p.cfg.Tenants[0].upkeepConn(p.Server(), site, "test")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(nc.Close)
				if upkeep, err = jetstream.New(nc); err != nil {
					t.Fatal(err)
				}
				cutAndCatchUp(t, cjs, publish, upkeep, px, site, &logs)
				return
			}
			cjs = peerJS(t, startPeer(t, centralConfig(t, "c1")))
			join, px := joinViaProxy(t, cjs, site)
			var logs logWatch
			publish = peerJS(t, startPeerLog(t, siteConfig(t, site, join), &logs))
			cutAndCatchUp(t, cjs, publish, publish, px, site, &logs)
		})
	}
}

// cutAndCatchUp is TestResetAnswersRequestLostInCut at one site: publish
// and upkeep are JetStream at the site, to publish events and to read its
// source consumer; px carries its link.
func cutAndCatchUp(t *testing.T, cjs, publish, upkeep jetstream.JetStream, px *wan.Proxy, site string, logs *logWatch) {
	loseRequestInCut(t, cjs, publish, upkeep, px, site, logs)
	px.Drop(false)
	t.Logf("central had every event %s after the link returned", waitCount(t, cjs, site, 100+cutEvents, 30*time.Second))
	if err := logs.has("answered the flow-control request it had out"); err != nil {
		t.Fatal(err)
	}
}

// cutEvents are the events loseRequestInCut publishes in its cut.
const cutEvents = 15_000

// loseRequestInCut publishes 100 events at site and waits for central to
// hold them, then cuts px silently and publishes cutEvents more: the
// source consumer delivers its window into the cut and, at its limit,
// asks for flow control there too. It returns once the consumer is at its
// limit (and the keeper did not see the cut), with the consumer and the
// limit; the cut goes on.
func loseRequestInCut(t *testing.T, cjs, publish, upkeep jetstream.JetStream, px *wan.Proxy, site string, logs *logWatch) (jetstream.PushConsumer, int) {
	t.Helper()
	ctx := t.Context()
	publishSite(t, publish, site, 0, 100)
	waitCount(t, cjs, site, 100, 20*time.Second)
	consumer, err := upkeep.PushConsumer(ctx, bus.EventsStream, bus.SourceConsumer(bus.EventsStream))
	if err != nil {
		t.Fatal(err)
	}
	limit := consumer.CachedInfo().Config.MaxAckPending

	px.Drop(true)
	publishSite(t, publish, site, 100, cutEvents)
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
	return consumer, limit
}
