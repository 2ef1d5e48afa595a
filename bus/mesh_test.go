package bus

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/internal/eventually"
)

// TestValidateSite: a site is a valid name and not central's domain.
func TestValidateSite(t *testing.T) {
	for _, tt := range []struct {
		site string
		ok   bool
	}{{"paris", true}, {"site-2", true}, {HubDomain, false}, {"", false}, {"a.b", false}} {
		if err := ValidateSite(tt.site); (err == nil) != tt.ok {
			t.Errorf("ValidateSite(%q): %v", tt.site, err)
		}
	}
}

// TestPeerRemovedText: the members left, and a word when they are fewer
// than three.
func TestPeerRemovedText(t *testing.T) {
	var b strings.Builder
	if err := (PeerRemoved{Members: []string{"c1", "c2"}, Removed: "c3"}).WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if got := b.String(); !strings.HasPrefix(got, "peer c3 removed from the cluster; members left: c1, c2\n") || !strings.Contains(got, "fewer than three") {
		t.Errorf("text: %q", got)
	}
}

// TestEnsureSourceConsumersUpdatesLimit: a site peer that starts with a
// source consumer made by an older build (MaxAckPending 100,000) gets the
// current limit on the same consumer: what it delivered is kept.
func TestEnsureSourceConsumersUpdatesLimit(t *testing.T) {
	_, nc, js := runJS(t)
	ctx := testCtx(t)
	s, err := js.Stream(ctx, EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := js.Publish(ctx, "ev.s1.dev1.trap", []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	name, deliver := SourceConsumer(EventsStream), SourceDeliverSubject("s1", EventsStream)
	old := jetstream.ConsumerConfig{Durable: name, DeliverSubject: deliver, DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy: jetstream.AckFlowControlPolicy, FlowControl: true, IdleHeartbeat: time.Second, MaxAckPending: 100_000}
	if _, err := s.CreateOrUpdatePushConsumer(ctx, old); err != nil {
		t.Fatal(err)
	}
	// Take the three deliveries, as central would.
	sub, err := nc.Subscribe(deliver, func(*nats.Msg) {})
	if err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 10*time.Second, "the consumer delivers the three events", func() bool {
		c, err := s.PushConsumer(ctx, name)
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.Delivered.Stream == 3
	})
	_ = sub.Unsubscribe()

	if err := EnsureSourceConsumers(ctx, js, "s1"); err != nil {
		t.Fatal(err)
	}
	c, err := s.PushConsumer(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxAckPending != sourceBatch {
		t.Errorf("MaxAckPending %d, want %d", info.Config.MaxAckPending, sourceBatch)
	}
	if info.Delivered.Stream != 3 {
		t.Errorf("delivered up to %d after the update, want 3 (the consumer was made again)", info.Delivered.Stream)
	}
}
