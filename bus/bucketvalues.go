package bus

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"
)

// BucketValues returns every live key of bucket with its latest value,
// through one consumer that a tenant user may own (readBucket): what a
// reader that is no member of meshmon (the console) needs of a bucket
// another part of the mesh keeps, such as alarm.Bucket. A missing bucket
// is an error wrapping jetstream.ErrStreamNotFound.
func BucketValues(ctx context.Context, js jetstream.JetStream, bucket string) (map[string][]byte, error) {
	entries, err := readBucket(ctx, js, bucket)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(entries))
	for _, e := range entries {
		out[e.key] = e.value
	}
	return out, nil
}
