package tenancy_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/tenancy"
)

// TestPollerKVPermissions: against a real server in operator mode, a
// poller credential writes its own heartbeat and its own site's group keys,
// and nothing else of the two buckets: not another poller's heartbeat, not
// another site's group keys.
func TestPollerKVPermissions(t *testing.T) {
	st := newStore(t)
	p := central(t, st)
	url := p.ClientURL()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sysCreds, err := st.SystemCreds(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	sys, err := connectCreds(t, url, sysCreds)
	if err != nil {
		t.Fatal(err)
	}
	tn, err := st.CreateTenant("acme", tenancy.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if err := tenancy.Push(ctx, sys, tn.JWT); err != nil {
		t.Fatal(err)
	}
	adminCreds, err := st.AdminCreds("acme", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := connectCreds(t, url, adminCreds)
	if err != nil {
		t.Fatal(err)
	}
	ajs, err := jetstream.New(admin)
	if err != nil {
		t.Fatal(err)
	}
	kvs := map[string]jetstream.KeyValue{}
	for _, b := range []string{bus.PollersBucket, bus.GroupBucket} {
		kv, err := ajs.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: b, MaxBytes: 1 << 20, Storage: jetstream.FileStorage})
		if err != nil {
			t.Fatal(err)
		}
		kvs[b] = kv
	}
	_, creds, err := st.IssueUser("acme", "p1", tenancy.RolePoller, "s1")
	if err != nil {
		t.Fatal(err)
	}
	pnc, err := connectCreds(t, url, creds)
	if err != nil {
		t.Fatal(err)
	}
	pjs, err := jetstream.New(pnc)
	if err != nil {
		t.Fatal(err)
	}
	put := func(bucket, key string) error {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := pjs.Publish(pctx, bus.KVSubject(bucket, key), []byte(`{}`))
		return err
	}
	for _, ok := range []struct{ bucket, key string }{
		{bus.PollersBucket, bus.PollerKey("s1", "p1")},
		{bus.GroupBucket, bus.GroupLeaderKey("s1")},
		{bus.GroupBucket, bus.GroupAssignmentKey("s1")},
	} {
		if err := put(ok.bucket, ok.key); err != nil {
			t.Errorf("%s %s: %v", ok.bucket, ok.key, err)
		}
	}
	for _, refused := range []struct{ bucket, key string }{
		{bus.PollersBucket, bus.PollerKey("s1", "p2")}, // another poller's heartbeat
		{bus.PollersBucket, bus.PollerKey("s2", "p1")}, // its name at another site
		{bus.GroupBucket, bus.GroupLeaderKey("s2")},    // another site's group
		{bus.GroupBucket, bus.GroupAssignmentKey("s2")},
		{bus.GroupBucket, "leader"}, // the keys of an older release
		{bus.DevicesBucket, "d1"},
	} {
		if err := put(refused.bucket, refused.key); err == nil {
			t.Errorf("%s %s: written", refused.bucket, refused.key)
		}
		if kv := kvs[refused.bucket]; kv != nil {
			if _, err := kv.Get(ctx, refused.key); !errors.Is(err, jetstream.ErrKeyNotFound) {
				t.Errorf("%s %s: %v, want no such key", refused.bucket, refused.key, err)
			}
		}
	}
}
