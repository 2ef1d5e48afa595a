package provision_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/tenancy"
	"github.com/meshmon/meshmon/tenancy/provision"
)

// TestTailTenants: a key store without tenants is an error; a replay of
// every tenant's (empty) stream ends; a tenant central cannot be reached
// for is named in the error. (test/e2e's tenancy test tails events of two
// tenants through their sites.)
func TestTailTenants(t *testing.T) {
	st := newStore(t)
	url, sys := central(t, st)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dial := func(tenant string, creds []byte) (*nats.Conn, error) { return dialer(t, url)(creds) }
	opts := bus.TailOptions{Stream: bus.EventsStream, Since: time.Now().Add(-time.Hour)}
	got := 0
	count := func(string, bus.TailMsg) error { got++; return nil }
	if err := provision.TailTenants(ctx, st, dial, opts, count); err == nil || !strings.Contains(err.Error(), "no tenants") {
		t.Fatalf("tail of a key store without tenants: %v", err)
	}
	for _, name := range []string{"acme", "globex"} {
		if _, _, err := provision.Create(ctx, st, sys, dialer(t, url), name, tenancy.DefaultLimits(), 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := provision.TailTenants(ctx, st, dial, opts, count); err != nil || got != 0 {
		t.Fatalf("replay of two empty streams: %d messages, %v", got, err)
	}
	refused := errors.New("refused")
	fail := func(tenant string, creds []byte) (*nats.Conn, error) {
		if tenant == "globex" {
			return nil, refused
		}
		return dialer(t, url)(creds)
	}
	if err := provision.TailTenants(ctx, st, fail, opts, count); !errors.Is(err, refused) || !strings.Contains(err.Error(), "tenant globex") {
		t.Fatalf("a tenant that cannot connect: %v; want %v naming tenant globex", err, refused)
	}
}
