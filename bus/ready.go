package bus

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/internal/backoff"
)

// CheckReady returns nil when the peer js reaches serves everything its
// role keeps in JetStream, as EnsureCentral and EnsureStreams make it: for
// central (JetStream domain HubDomain) its EVENTS and METRICS streams and
// its sites and central buckets; for a site its EVENTS and METRICS streams
// and its devices, pollers and group buckets. Each must answer an info
// request, so a clustered peer is ready once each has a leader. Otherwise
// it returns an error wrapping ErrNotReady that names the first one missing
// (or wrapping the API's error when JetStream itself does not answer).
func CheckReady(ctx context.Context, js jetstream.JetStream) error {
	info, err := js.AccountInfo(ctx)
	if err != nil {
		return fmt.Errorf("%w: jetstream: %w", ErrNotReady, err)
	}
	lim := DefaultStreamLimits()
	var streams []string
	for _, cfg := range lim.streamConfigs() {
		streams = append(streams, cfg.Name)
	}
	buckets := []string{SitesBucket, CentralBucket}
	if info.Domain != HubDomain {
		buckets = buckets[:0]
		for _, cfg := range lim.bucketConfigs() {
			buckets = append(buckets, cfg.Bucket)
		}
	}
	for _, name := range streams {
		if _, err := js.Stream(ctx, name); err != nil {
			return fmt.Errorf("%w: stream %s: %w", ErrNotReady, name, err)
		}
	}
	for _, name := range buckets {
		if _, err := js.KeyValue(ctx, name); err != nil {
			return fmt.Errorf("%w: bucket %s: %w", ErrNotReady, name, err)
		}
	}
	return nil
}

// WaitReady is CheckReady tried again (after 250 ms, doubling up to 2 s,
// jittered: internal/backoff) until it passes or ctx ends; it then returns
// CheckReady's last error.
func WaitReady(ctx context.Context, js jetstream.JetStream) error {
	for b := backoff.New(250*time.Millisecond, 2*time.Second); ; {
		err := CheckReady(ctx, js)
		if err == nil || !b.Wait(ctx) {
			return err
		}
	}
}
