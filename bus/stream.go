package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StreamLimits sizes the streams EnsureStreams creates. A site peer's
// limits must cover its longest expected WAN outage.
type StreamLimits struct {
	EventsMaxAge      time.Duration `json:"events_max_age"`
	MetricsMaxAge     time.Duration `json:"metrics_max_age"`
	EventsMaxBytes    int64         `json:"events_max_bytes"`
	MetricsMaxBytes   int64         `json:"metrics_max_bytes"`
	EventsDuplicates  time.Duration `json:"events_duplicates"`  // dedup window for Nats-Msg-Id
	MetricsDuplicates time.Duration `json:"metrics_duplicates"` // dedup window for Nats-Msg-Id
	Replicas          int           `json:"replicas"`           // 1, 3 or 5; 0 means 1
}

const gib = 1 << 30

// DefaultStreamLimits returns the limits of a single site peer: events for
// 30 days, metrics for 7, at most 10 GiB each, and dedup windows of 10 and
// 2 minutes.
func DefaultStreamLimits() StreamLimits {
	return StreamLimits{
		EventsMaxAge:      30 * 24 * time.Hour,
		MetricsMaxAge:     7 * 24 * time.Hour,
		EventsMaxBytes:    10 * gib,
		MetricsMaxBytes:   10 * gib,
		EventsDuplicates:  10 * time.Minute,
		MetricsDuplicates: 2 * time.Minute,
		Replicas:          1,
	}
}

// Validate returns the first field that breaks a rule, naming both. The
// error wraps ErrInvalidConfig.
func (l StreamLimits) Validate() error {
	bad := func(field, rule string, v any) error {
		return fmt.Errorf("%w: %s %v %s", ErrInvalidConfig, field, v, rule)
	}
	type age struct {
		name     string
		max, dup time.Duration
	}
	for _, a := range []age{
		{"events", l.EventsMaxAge, l.EventsDuplicates},
		{"metrics", l.MetricsMaxAge, l.MetricsDuplicates},
	} {
		if a.max < 0 {
			return bad(a.name+" max age", "must not be negative (0 keeps messages until max bytes)", a.max)
		}
		if a.max > 0 && a.max < time.Minute {
			return bad(a.name+" max age", "is too short; use at least 1m or 0 for no limit", a.max)
		}
		if a.dup < time.Second {
			return bad(a.name+" duplicates", "must be at least 1s (it is the Nats-Msg-Id dedup window)", a.dup)
		}
		if a.max > 0 && a.dup > a.max {
			return bad(a.name+" duplicates", fmt.Sprintf("must not exceed the max age %s", a.max), a.dup)
		}
	}
	if l.EventsMaxBytes != -1 && l.EventsMaxBytes < 1<<20 {
		return bad("events max bytes", "must be at least 1 MiB, or -1 for no limit", l.EventsMaxBytes)
	}
	if l.MetricsMaxBytes != -1 && l.MetricsMaxBytes < 1<<20 {
		return bad("metrics max bytes", "must be at least 1 MiB, or -1 for no limit", l.MetricsMaxBytes)
	}
	switch l.Replicas {
	case 0, 1, 3, 5:
	default:
		return bad("replicas", "must be 1, 3 or 5", l.Replicas)
	}
	return nil
}

func (l StreamLimits) replicas() int {
	if l.Replicas == 0 {
		return 1
	}
	return l.Replicas
}

// streamConfigs returns the configurations of EVENTS and METRICS.
func (l StreamLimits) streamConfigs() []jetstream.StreamConfig {
	mk := func(name, desc, subj string, age time.Duration, bytes int64, dup time.Duration) jetstream.StreamConfig {
		return jetstream.StreamConfig{
			Name:        name,
			Description: desc,
			Subjects:    []string{subj},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Discard:     jetstream.DiscardOld,
			MaxAge:      age,
			MaxBytes:    bytes,
			MaxMsgs:     -1,
			Duplicates:  dup,
			Replicas:    l.replicas(),
			// Atomic batches (Nats-Batch-*): Publisher sends each run of
			// messages for one stream as one batch, all stored or none
			// (see publish.go).
			AllowAtomicPublish: true,
			RePublish:          &jetstream.RePublish{Source: subj, Destination: StoredPrefix + subj},
		}
	}
	return []jetstream.StreamConfig{
		mk(EventsStream, "meshmon events: ev.<site>.<device>.<kind>", EventsSubjects, l.EventsMaxAge, l.EventsMaxBytes, l.EventsDuplicates),
		mk(MetricsStream, "meshmon metric samples: mx.<site>.<device>.<check>", MetricsSubjects, l.MetricsMaxAge, l.MetricsMaxBytes, l.MetricsDuplicates),
	}
}

// pollersMarkerTTL is how long the pollers bucket keeps the marker of an
// expired heartbeat, so that watchers see a poller vanish.
const pollersMarkerTTL = time.Minute

// bucketConfigs returns the configurations of the KV buckets.
func (l StreamLimits) bucketConfigs() []jetstream.KeyValueConfig {
	return []jetstream.KeyValueConfig{
		{
			Bucket:      DevicesBucket,
			Description: "meshmon device inventory, keyed by device name",
			History:     5,
			Storage:     jetstream.FileStorage,
			Replicas:    l.replicas(),
		},
		{
			Bucket:      PollersBucket,
			Description: "meshmon poller heartbeats, keyed by poller name; keys expire",
			History:     1,
			Storage:     jetstream.FileStorage,
			Replicas:    l.replicas(),
			// Per-key TTLs (Nats-TTL) and expiry markers for watchers.
			LimitMarkerTTL: pollersMarkerTTL,
		},
		{
			Bucket:      GroupBucket,
			Description: "meshmon poller group: the leader's lease and the assignment of devices to pollers",
			History:     1,
			Storage:     jetstream.FileStorage,
			Replicas:    l.replicas(),
			// The lease is a per-key TTL; its marker wakes the candidates.
			LimitMarkerTTL: pollersMarkerTTL,
		},
	}
}

// EnsureStreams creates EVENTS, METRICS and the devices, pollers and group
// KV buckets, or updates them to lim if they exist. It is idempotent; a peer
// calls it on every start.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, lim StreamLimits) error {
	if err := lim.Validate(); err != nil {
		return err
	}
	for _, cfg := range lim.streamConfigs() {
		if err := ensureStream(ctx, js, cfg); err != nil {
			return err
		}
	}
	for _, cfg := range lim.bucketConfigs() {
		if err := ensureBucket(ctx, js, cfg); err != nil {
			return err
		}
	}
	return nil
}

// ensureStream creates the stream of cfg, or updates it when its limits or
// sources differ. It never lowers the replicas (a cluster member scales
// them up; a restarting member must not scale them down) and leaves a
// stream that already matches alone: an update of a sourcing stream
// restarts its sources.
func ensureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) error {
	s, err := js.Stream(ctx, cfg.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if _, err := js.CreateStream(ctx, cfg); err != nil {
			return fmt.Errorf("create stream %s: %w", cfg.Name, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("stream %s: %w", cfg.Name, err)
	}
	cur := s.CachedInfo().Config
	cfg.Replicas = max(cfg.Replicas, cur.Replicas)
	if sameStream(cur, cfg) {
		return nil
	}
	return updateStream(ctx, js, cfg, cur.Replicas)
}

// ScaleStream raises the stream name to replicas; it does nothing to a
// stream that has as many already.
func ScaleStream(ctx context.Context, js jetstream.JetStream, name string, replicas int) (bool, error) {
	s, err := js.Stream(ctx, name)
	if err != nil {
		return false, fmt.Errorf("stream %s: %w", name, err)
	}
	cfg := s.CachedInfo().Config
	if cfg.Replicas >= replicas {
		return false, nil
	}
	prev := cfg.Replicas
	cfg.Replicas = replicas
	return true, updateStream(ctx, js, cfg, prev)
}

// updateStream applies cfg to its stream. When that raises the replicas of
// a stream that sources, it sets the sources again: on nats-server 2.15.2
// the sources of a stream scaled up stall until then. Set again, each source
// resumes after the last message the stream holds of it (JetStream finds it
// from the messages' source headers), so nothing is sent twice.
func updateStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig, prevReplicas int) error {
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("update stream %s: %w", cfg.Name, err)
	}
	if cfg.Replicas <= prevReplicas || len(cfg.Sources) == 0 {
		return nil
	}
	return resetSources(ctx, js, cfg, nil)
}

// resetSources drops the sources from sites (every source when sites is
// nil) of the stream cfg describes and sets them again; each resumes after
// the last message the stream holds of it.
func resetSources(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig, sites []string) error {
	srcs := cfg.Sources
	cfg.Sources = nil
	if sites != nil {
		for _, src := range srcs {
			if !slices.Contains(sites, src.Domain) && !slices.Contains(sites, sourceSite(src.External)) {
				cfg.Sources = append(cfg.Sources, src)
			}
		}
	}
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("stream %s: drop its sources: %w", cfg.Name, err)
	}
	cfg.Sources = srcs
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("stream %s: set its sources again: %w", cfg.Name, err)
	}
	return nil
}

// sameStream reports whether a stream configured as cur already is what
// want asks for, in what meshmon sets.
func sameStream(cur, want jetstream.StreamConfig) bool {
	if cur.MaxAge != want.MaxAge || cur.MaxBytes != want.MaxBytes || cur.Duplicates != want.Duplicates ||
		cur.Replicas != want.Replicas || !slices.Equal(cur.Subjects, want.Subjects) || len(cur.Sources) != len(want.Sources) ||
		cur.AllowAtomicPublish != want.AllowAtomicPublish || (cur.RePublish == nil) != (want.RePublish == nil) ||
		(cur.RePublish != nil && *cur.RePublish != *want.RePublish) {
		return false
	}
	for i := range cur.Sources {
		a, b := cur.Sources[i], want.Sources[i]
		if a.Name != b.Name || (a.Consumer == nil) != (b.Consumer == nil) || a.External == nil ||
			a.External.APIPrefix != "$JS."+b.Domain+".API" || (a.Consumer != nil && *a.Consumer != *b.Consumer) {
			return false
		}
	}
	return true
}

// ensureBucket creates a KV bucket, or leaves it as it is: its settings are
// fixed, and its replicas only ever go up.
func ensureBucket(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) error {
	if _, err := js.KeyValue(ctx, cfg.Bucket); err == nil {
		return nil
	} else if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return fmt.Errorf("kv bucket %s: %w", cfg.Bucket, err)
	}
	if _, err := js.CreateKeyValue(ctx, cfg); err != nil && !errors.Is(err, jetstream.ErrBucketExists) {
		return fmt.Errorf("create kv bucket %s: %w", cfg.Bucket, err)
	}
	return nil
}

// StreamInfo is the state of one stream, as `meshmon status` shows it.
type StreamInfo struct {
	Name      string    `json:"name"`
	Subjects  []string  `json:"subjects,omitempty"`
	Messages  uint64    `json:"messages"`
	Bytes     uint64    `json:"bytes"`
	FirstSeq  uint64    `json:"first_seq"`
	FirstTime time.Time `json:"first_time"`
	LastSeq   uint64    `json:"last_seq"`
	LastTime  time.Time `json:"last_time"`
	Consumers int       `json:"consumers"`
	// MaxAge and MaxBytes are the stream's limits. A stream without a
	// size of its own (-1) is bounded by its account's disk, AccountDisk
	// (a tenant's streams at a site), when the account has a limit.
	MaxAge      time.Duration `json:"max_age_ns"`
	MaxBytes    int64         `json:"max_bytes"`
	AccountDisk int64         `json:"account_disk,omitempty"`
	// RideOut is how long a WAN outage the stream can hold without losing
	// what central has not sourced yet: MaxAge, or less if, at the rate the
	// stream has grown so far, MaxBytes fills sooner. Zero when unknown.
	RideOut time.Duration `json:"ride_out_ns"`
}

// rideOut estimates how long the stream keeps a message: its max age, or
// the time its max bytes last at the rate it grew between its first and
// last message.
func rideOut(maxAge time.Duration, maxBytes int64, bytes uint64, first, last time.Time) time.Duration {
	d := maxAge
	span := last.Sub(first)
	if maxBytes > 0 && bytes > 0 && span > time.Minute {
		rate := float64(bytes) / span.Seconds() // bytes per second
		if full := time.Duration(float64(maxBytes) / rate * float64(time.Second)); d <= 0 || full < d {
			d = full
		}
	}
	return d
}

// StreamStatus returns the state of EVENTS and METRICS, in that order. A
// stream that does not exist is an error.
func StreamStatus(ctx context.Context, js jetstream.JetStream) ([]StreamInfo, error) {
	var out []StreamInfo
	var accountDisk int64 // the account's disk limit, for streams without a size
	for _, name := range []string{EventsStream, MetricsStream} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("stream %s: %w", name, err)
		}
		info := s.CachedInfo()
		st := info.State
		maxBytes := info.Config.MaxBytes
		if maxBytes < 0 && accountDisk == 0 {
			accountDisk = -1
			if ai, err := js.AccountInfo(ctx); err == nil && ai.Limits.MaxStore > 0 {
				accountDisk = ai.Limits.MaxStore
			}
		}
		bound := maxBytes
		if maxBytes < 0 && accountDisk > 0 {
			bound = accountDisk
		}
		out = append(out, StreamInfo{
			Name:      name,
			Subjects:  info.Config.Subjects,
			Messages:  st.Msgs,
			Bytes:     st.Bytes,
			FirstSeq:  st.FirstSeq,
			FirstTime: st.FirstTime,
			LastSeq:   st.LastSeq,
			LastTime:  st.LastTime,
			Consumers: st.Consumers,
			MaxAge:    info.Config.MaxAge,
			MaxBytes:  maxBytes,
			RideOut:   rideOut(info.Config.MaxAge, bound, st.Bytes, st.FirstTime, st.LastTime),
		})
		if maxBytes < 0 && accountDisk > 0 {
			out[len(out)-1].AccountDisk = accountDisk
		}
	}
	return out, nil
}

// WaitJetStream polls until JetStream answers an account info request in
// js's account: a server enables it a moment after it is ready, and an
// account a moment after its JWT arrives. It fails when ctx is done.
func WaitJetStream(ctx context.Context, js jetstream.JetStream) error {
	for {
		actx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := js.AccountInfo(actx)
		cancel()
		if err == nil {
			return nil
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("JetStream did not answer: %w", err)
		case <-t.C:
		}
	}
}
