package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
)

// DefaultPollerTTL is how long a heartbeat keeps a poller listed: three
// heartbeats of 5 s.
const DefaultPollerTTL = 15 * time.Second

// Registry is the list of live pollers in the PollersBucket KV bucket, each
// at PollerKey(site, name). A poller's key carries a per-message TTL
// (Nats-TTL) and vanishes when the poller stops renewing it. It is safe for concurrent use once its fields
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

// validPoller checks the parts of p's key.
func validPoller(p meshmon.PollerInfo) error {
	if err := meshmon.ValidateName("poller name", p.Name); err != nil {
		return err
	}
	return meshmon.ValidateName("poller site", p.Site)
}

// Heartbeat records p at its key (PollerKey of its site and name), with
// LastSeen set to now, for the registry's TTL.
func (r *Registry) Heartbeat(ctx context.Context, p meshmon.PollerInfo) error {
	if err := validPoller(p); err != nil {
		return err
	}
	p.LastSeen = r.Now().UTC()
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("heartbeat %s: %w", p.Name, err)
	}
	ttl := r.ttl()
	// kv.Put would drop the per-key TTL; publish to the key's subject with
	// Nats-TTL instead (see DESIGN.md, KV leases).
	if _, err := r.js.Publish(ctx, KVSubject(PollersBucket, PollerKey(p.Site, p.Name)), b, jetstream.WithMsgTTL(ttl)); err != nil {
		return fmt.Errorf("heartbeat %s: %w", p.Name, err)
	}
	return nil
}

// Claim takes the poller's name at its site for p.Instance and records the
// first heartbeat. It fails with an error wrapping ErrNameTaken if another
// instance holds the name with a heartbeat that has not expired; a restart
// of the same instance (same storage file) takes its name back at once.
func (r *Registry) Claim(ctx context.Context, p meshmon.PollerInfo) error {
	if err := validPoller(p); err != nil {
		return err
	}
	key := PollerKey(p.Site, p.Name)
	for range 3 {
		p.LastSeen = r.Now().UTC()
		b, err := json.Marshal(p)
		if err != nil {
			return fmt.Errorf("claim poller name %s: %w", p.Name, err)
		}
		_, err = r.kv.Create(ctx, key, b, jetstream.KeyTTL(r.ttl()))
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("claim poller name %s: %w", p.Name, err)
		}
		e, err := r.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // expired meanwhile
		}
		if err != nil {
			return fmt.Errorf("claim poller name %s: %w", p.Name, err)
		}
		var held meshmon.PollerInfo
		if err := json.Unmarshal(e.Value(), &held); err == nil && held.Instance != "" && held.Instance != p.Instance {
			return fmt.Errorf("poller name %q at site %s: %w (instance %s, last heartbeat %s ago); give each poller its own --name",
				p.Name, p.Site, ErrNameTaken, held.Instance, r.Now().Sub(held.LastSeen).Round(time.Second))
		}
		return r.Heartbeat(ctx, p)
	}
	return fmt.Errorf("claim poller name %s: the name keeps changing hands", p.Name)
}

// Leave removes the heartbeat of the poller name at site if instance holds
// it, so that its group gives its devices to the others at once.
func (r *Registry) Leave(ctx context.Context, site, name, instance string) error {
	key := PollerKey(site, name)
	e, err := r.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("leave %s: %w", name, err)
	}
	var held meshmon.PollerInfo
	if err := json.Unmarshal(e.Value(), &held); err == nil && held.Instance != instance {
		return nil // another instance holds the name now
	}
	if err := r.kv.Delete(ctx, key, jetstream.LastRevision(e.Revision())); err != nil {
		return fmt.Errorf("leave %s: %w", name, err)
	}
	return nil
}

func (r *Registry) ttl() time.Duration {
	ttl := r.TTL
	if ttl <= 0 {
		ttl = DefaultPollerTTL
	}
	return (ttl + time.Second - 1).Truncate(time.Second)
}

// List returns the pollers whose heartbeat has not expired, sorted by site
// and name; none gives an empty list. A heartbeat that cannot be decoded or
// whose content disagrees with its key (PollerKey) is left out.
func (r *Registry) List(ctx context.Context) ([]meshmon.PollerInfo, error) {
	entries, err := readBucket(ctx, r.js, PollersBucket)
	if err != nil {
		return nil, fmt.Errorf("list pollers: %w", err)
	}
	pollers := make([]meshmon.PollerInfo, 0, len(entries))
	for _, e := range entries {
		var p meshmon.PollerInfo
		if err := json.Unmarshal(e.value, &p); err != nil || e.key != PollerKey(p.Site, p.Name) {
			// Undecodable, or a heartbeat that says it is another's than
			// its key's (a poller's credential may write its own key, with
			// anything in it), or one of an older release's keys: it
			// speaks for no poller, and must not keep status from
			// showing the others.
			continue
		}
		pollers = append(pollers, p)
	}
	sort.Slice(pollers, func(i, j int) bool {
		if pollers[i].Site != pollers[j].Site {
			return pollers[i].Site < pollers[j].Site
		}
		return pollers[i].Name < pollers[j].Name
	})
	return pollers, nil
}

// CheckSite fails with an error wrapping ErrWrongSite unless the peer that
// js reaches keeps the JetStream domain of site: a poller started with the
// wrong --site would see none of its devices and file its traps under the
// wrong site.
func CheckSite(ctx context.Context, js jetstream.JetStream, site string) error {
	info, err := js.AccountInfo(ctx)
	if err != nil {
		return fmt.Errorf("check site: %w", err)
	}
	if info.Domain != site {
		return fmt.Errorf("site %q: %w %q (its JetStream domain); use --site %s, or the peer of site %s", site, ErrWrongSite, info.Domain, info.Domain, site)
	}
	return nil
}
