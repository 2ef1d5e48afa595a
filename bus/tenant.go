package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TenantBucket is a KV bucket in a tenant's account at central (domain
// HubDomain) that holds the tenant's current account JWT at
// TenantAccountKey: the CLI writes it on every change, and the tenant's
// sites watch it over their leaf links, so a new limit or a revoked
// credential reaches them at run time.
const (
	TenantBucket     = "tenant"
	TenantAccountKey = "account"
	// TenantWakeKey is where WakeCentral writes.
	TenantWakeKey = "wake"
)

// WakeCentral asks central to serve the tenant (js works in its account
// at central): to run its alarm processor and notification runner, which
// make its alarm and notification stores. Central serves a tenant once
// the tenant has stored an event, or once its TenantBucket holds a wake
// (peer.tenantAccounts; the wake is kept); a tenant's admin, who may make
// no stream, wakes it so before the tenant's first event, to set
// notifications or maintenance up.
func WakeCentral(ctx context.Context, js jetstream.JetStream) error {
	kv, err := js.KeyValue(ctx, TenantBucket)
	if err != nil {
		return fmt.Errorf("tenant bucket: %w", err)
	}
	if _, err := kv.PutString(ctx, TenantWakeKey, time.Now().UTC().Format(time.RFC3339Nano)); err != nil {
		return fmt.Errorf("tenant bucket: %w", err)
	}
	return nil
}

// PutAccountJWT records the tenant's account JWT in its TenantBucket at
// central (js works in the tenant's account, in domain HubDomain), making
// the bucket when it is missing.
func PutAccountJWT(ctx context.Context, js jetstream.JetStream, token string, replicas int) error {
	kv, err := js.KeyValue(ctx, TenantBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: TenantBucket, Description: "meshmon: the tenant's account JWT, for its sites", History: 1,
			Storage: jetstream.FileStorage, Replicas: max(replicas, 1),
		})
	}
	if err != nil {
		return fmt.Errorf("tenant bucket: %w", err)
	}
	if _, err := kv.PutString(ctx, TenantAccountKey, token); err != nil {
		return fmt.Errorf("tenant bucket: %w", err)
	}
	return nil
}

// WaitMade waits until made finds a store of the tenant that central
// makes when it serves the tenant (made returns an error other than a
// bucket's or stream's not being found, or none), waking central
// (WakeCentral) every wakeEvery meanwhile, until ctx is done. A credential
// that may not wake central is refused as soon as the server says so.
func WaitMade(ctx context.Context, js jetstream.JetStream, made func(context.Context) error) error {
	var woke time.Time
	for {
		err := made(ctx)
		if !errors.Is(err, jetstream.ErrBucketNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return err
		}
		refused := func() error {
			if le := js.Conn().LastError(); errors.Is(le, nats.ErrPermissionViolation) {
				return fmt.Errorf("%w: %w: this credential may not wake central to make it", err, le)
			}
			return nil
		}
		if err := refused(); err != nil {
			return err
		}
		if time.Since(woke) >= wakeEvery {
			woke = time.Now()
			wctx, cancel := context.WithTimeout(ctx, time.Second) // a refused wake is never acked
			_ = WakeCentral(wctx, js)
			cancel()
		}
		select {
		case <-ctx.Done():
			if err := refused(); err != nil {
				return err
			}
			return fmt.Errorf("%w (central makes it when it serves the tenant: from its first event, or once woken)", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// wakeEvery is how often WaitMade wakes central.
const wakeEvery = 2 * time.Second
