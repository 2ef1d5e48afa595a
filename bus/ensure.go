package bus

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"
)

// EnsureStream creates the stream of cfg, or updates it when its limits
// differ, never lowering its replicas (as EnsureStreams does for EVENTS
// and METRICS). Packages with streams of their own (alarmbus) call it.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) error {
	return ensureStream(ctx, js, cfg)
}

// EnsureBucket creates the KV bucket of cfg, or leaves it as it is.
func EnsureBucket(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) error {
	return ensureBucket(ctx, js, cfg)
}

// BucketEntry is one live key of a bucket and its latest value.
type BucketEntry struct {
	Key      string
	Value    []byte
	Revision uint64
}

// ReadBucket reads every live key of a bucket with its latest value, in
// stream order, through a consumer that a tenant's NOC user may make (one
// of its own names) and that is removed when done.
func ReadBucket(ctx context.Context, js jetstream.JetStream, bucket string) ([]BucketEntry, error) {
	es, err := readBucket(ctx, js, bucket)
	if err != nil {
		return nil, err
	}
	out := make([]BucketEntry, len(es))
	for i, e := range es {
		out[i] = BucketEntry{Key: e.key, Value: e.value, Revision: e.revision}
	}
	return out, nil
}
