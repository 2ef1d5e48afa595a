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
// with it, and the link is replaced, so the keeper sees it down at most
// while the site dials again (a cut after which it kept the consumer is
// made again: cutUntilShown). Once the link is back, central answers the stall the consumer's
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
	cutUntilShown(t, &logs, func(first int) int {
		consumer := loseRequestInCut(t, cjs, paris, paris, px, "paris", first)
		px.Drop(false)
		held := first + 100 + cutEvents
		waitCount(t, cjs, "paris", uint64(held), 30*time.Second)
		// The limit set back (here, or after a cut the keeper saw),
		// before another cut.
		eventually.NoError(t, 10*time.Second, "the consumer's limit set back", func() error {
			info, err := consumer.Info(ctx)
			if err != nil {
				return err
			}
			if got := info.Config.MaxAckPending; got != bus.SourceMaxAckPending {
				return fmt.Errorf("MaxAckPending %d, want %d", got, bus.SourceMaxAckPending)
			}
			return nil
		})
		return held
	}, func(mark int) error {
		return waitLine(&logs, mark, "the source consumer asks for flow control at once", 10*time.Second)
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
	cutUntilShown(t, logs, func(first int) int {
		loseRequestInCut(t, cjs, publish, upkeep, px, site, first)
		px.Drop(false)
		held := first + 100 + cutEvents
		t.Logf("central had every event %s after the link returned", waitCount(t, cjs, site, uint64(held), 30*time.Second))
		return held
	}, func(mark int) error {
		return logs.hasSince(mark, "answered the flow-control request it had out")
	})
}

// cutUntilShown runs cut, which cuts a site's link silently, publishes
// events numbered from first, ends the cut and returns the number of the
// next, until shown, given where that cut's log lines begin, finds what
// the test shows. The end of a cut replaces the link, and a keeper that
// looks while its site dials again keeps the consumer and answers what it
// has out itself (a loaded machine dials slowly): a cut whose shown fails
// after the keeper kept the consumer is not the one tested, and is made
// again, up to three times.
func cutUntilShown(t *testing.T, logs *logWatch, cut func(first int) int, shown func(mark int) error) {
	t.Helper()
	first := 0
	for try := 1; ; try++ {
		mark := logs.mark()
		first = cut(first)
		err := shown(mark)
		if err == nil {
			return
		}
		if logs.hasSince(mark, "keeping the source consumer") != nil {
			for _, l := range logs.matching("peer source keeper") {
				t.Log(l)
			}
			t.Fatal(err)
		}
		if try == 3 {
			t.Fatalf("the keeper kept the consumer after each of %d cuts: %v", try, err)
		}
		t.Logf("the keeper kept the consumer after cut %d: cutting again", try)
	}
}

// waitLine waits until logs has a line with sub from mark on, for up to
// within.
func waitLine(logs *logWatch, mark int, sub string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		err := logs.hasSince(mark, sub)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
	}
}

// cutEvents are the events loseRequestInCut publishes in its cut.
const cutEvents = 15_000

// loseRequestInCut publishes 100 events at site, numbered from first, and
// waits for central to hold them, then cuts px silently and publishes
// cutEvents more: the source consumer delivers its window into the cut
// and, at its limit, asks for flow control there too. It returns once the
// consumer is at its limit, with the consumer; the cut goes on.
func loseRequestInCut(t *testing.T, cjs, publish, upkeep jetstream.JetStream, px *wan.Proxy, site string, first int) jetstream.PushConsumer {
	t.Helper()
	ctx := t.Context()
	publishSite(t, publish, site, first, 100)
	waitCount(t, cjs, site, uint64(first+100), 20*time.Second)
	consumer, err := upkeep.PushConsumer(ctx, bus.EventsStream, bus.SourceConsumer(bus.EventsStream))
	if err != nil {
		t.Fatal(err)
	}

	px.Drop(true)
	cut := time.Now()
	publishSite(t, publish, site, first+100, cutEvents)
	eventually.NoError(t, 20*time.Second, "the consumer at its limit in the cut", func() error {
		info, err := consumer.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumAckPending < bus.SourceMaxAckPending {
			return fmt.Errorf("%d deliveries await central, want %d", info.NumAckPending, bus.SourceMaxAckPending)
		}
		return nil
	})
	t.Logf("the consumer at its limit %s into the cut", time.Since(cut).Round(time.Millisecond))
	return consumer
}
