package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
)

// DefaultPollerTTL is how long a heartbeat keeps a poller listed: three
// heartbeats of 5 s.
const DefaultPollerTTL = 15 * time.Second

// Registry is the list of live pollers in the PollersBucket KV bucket. A
// poller's key carries a per-message TTL (Nats-TTL) and vanishes when the
// poller stops renewing it. It is safe for concurrent use once its fields
// are set.
type Registry struct {
	js jetstream.JetStream
	kv jetstream.KeyValue

	// TTL is how long one heartbeat keeps the poller listed; it is rounded
	// up to whole seconds, the server's resolution. Heartbeat at a third of
	// it. Set it before first use.
	TTL time.Duration
	// Now is the clock that stamps LastSeen.
	Now func() time.Time
}

// OpenRegistry binds to the pollers bucket, which EnsureStreams creates.
func OpenRegistry(ctx context.Context, js jetstream.JetStream) (*Registry, error) {
	kv, err := js.KeyValue(ctx, PollersBucket)
	if err != nil {
		return nil, fmt.Errorf("open poller registry: %w", err)
	}
	return &Registry{js: js, kv: kv, TTL: DefaultPollerTTL, Now: time.Now}, nil
}

// Heartbeat records p, with LastSeen set to now, for the registry's TTL.
func (r *Registry) Heartbeat(ctx context.Context, p meshmon.PollerInfo) error {
	if err := meshmon.ValidateName("poller name", p.Name); err != nil {
		return err
	}
	p.LastSeen = r.Now().UTC()
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("heartbeat %s: %w", p.Name, err)
	}
	ttl := r.TTL
	if ttl <= 0 {
		ttl = DefaultPollerTTL
	}
	ttl = (ttl + time.Second - 1).Truncate(time.Second)
	// kv.Put would drop the per-key TTL; publish to the key's subject with
	// Nats-TTL instead (see DESIGN.md, KV leases).
	if _, err := r.js.Publish(ctx, "$KV."+PollersBucket+"."+p.Name, b, jetstream.WithMsgTTL(ttl)); err != nil {
		return fmt.Errorf("heartbeat %s: %w", p.Name, err)
	}
	return nil
}

// List returns the pollers whose heartbeat has not expired, sorted by
// name; none gives an empty list.
func (r *Registry) List(ctx context.Context) ([]meshmon.PollerInfo, error) {
	w, err := r.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("list pollers: %w", err)
	}
	defer w.Stop()
	pollers := []meshmon.PollerInfo{}
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return nil, fmt.Errorf("list pollers: watcher closed")
			}
			if e == nil {
				sort.Slice(pollers, func(i, j int) bool { return pollers[i].Name < pollers[j].Name })
				return pollers, nil
			}
			var p meshmon.PollerInfo
			if err := json.Unmarshal(e.Value(), &p); err != nil {
				return nil, fmt.Errorf("list pollers: decode %s: %w", e.Key(), err)
			}
			pollers = append(pollers, p)
		case <-ctx.Done():
			return nil, fmt.Errorf("list pollers: %w", ctx.Err())
		}
	}
}
