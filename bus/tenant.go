package bus

import (
	"context"
	"errors"
	"fmt"

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
)

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
