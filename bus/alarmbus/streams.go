// Package alarmbus is the JetStream side of package alarm: the ALARMS
// stream, the alarms and maintenance buckets in each tenant's account at
// central, the processor that derives the alarms from the tenant's EVENTS
// stream, and the client side of the NOC's actions (alarms list, ack, ...;
// maintenance add, ...).
package alarmbus

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/alarm"
	"github.com/meshmon/meshmon/bus"
)

// Stream and bucket settings.
const (
	// StreamMaxAge is how long the ALARMS stream keeps a change.
	StreamMaxAge = 30 * 24 * time.Hour
	// StreamDuplicates is the ALARMS stream's window for Nats-Msg-Id: a
	// processor that takes over republishes changes of the last moments
	// before the crash, which it drops.
	StreamDuplicates = 10 * time.Minute
	// ProcessorBucket keeps the processor's checkpoint (key AppliedKey,
	// storedCheckpoint): the EVENTS sequence up to which every change is
	// stored, and what tells whether central lost what it applied.
	ProcessorBucket = "alarms_processor"
	AppliedKey      = "applied"
)

// ActionPrefix prefixes the subjects of the NOC's actions:
// alarmop.<user>.<verb> (ActionSubject). A user's permissions allow it
// its own name only, so the server proves who acts.
const ActionPrefix = "alarmop"

// ActionSubject is the subject a user's action of verb is requested on.
func ActionSubject(user, verb string) string { return ActionPrefix + "." + user + "." + verb }

// Ensure creates the ALARMS stream and the alarms, maintenance and
// processor buckets, with replicas (1, or 3 on a central cluster), or
// raises their replicas. It is idempotent.
func Ensure(ctx context.Context, js jetstream.JetStream, replicas int) error {
	err := bus.EnsureStream(ctx, js, jetstream.StreamConfig{
		Name:        alarm.Stream,
		Description: "meshmon alarm changes: alarm.<site>.<device>.<check>",
		Subjects:    []string{"alarm.>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardOld,
		MaxAge:      StreamMaxAge,
		MaxMsgs:     -1,
		MaxBytes:    -1,
		Duplicates:  StreamDuplicates,
		Replicas:    replicas,
		// The processor stores each batch's changes as one atomic
		// batch: one fsync for all under SyncAlways.
		AllowAtomicPublish: true,
	})
	if err != nil {
		return err
	}
	for _, cfg := range []jetstream.KeyValueConfig{
		{Bucket: alarm.Bucket, Description: "meshmon alarms: the current state of each, keyed by alarm ID", History: 1, Storage: jetstream.FileStorage, Replicas: replicas},
		{Bucket: alarm.MaintenanceBucket, Description: "meshmon maintenance windows, keyed by window ID", History: 5, Storage: jetstream.FileStorage, Replicas: replicas},
		{Bucket: ProcessorBucket, Description: "meshmon alarm processor checkpoint", History: 1, Storage: jetstream.FileStorage, Replicas: replicas},
	} {
		if err := bus.EnsureBucket(ctx, js, cfg); err != nil {
			return err
		}
	}
	return bus.AllowAtomic(ctx, js, "KV_"+alarm.Bucket)
}

// eventsReplicas returns the replicas of the EVENTS stream, which the
// alarms follow.
func eventsReplicas(ctx context.Context, js jetstream.JetStream) (int, error) {
	s, err := js.Stream(ctx, bus.EventsStream)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", bus.EventsStream, err)
	}
	return max(1, s.CachedInfo().Config.Replicas), nil
}
