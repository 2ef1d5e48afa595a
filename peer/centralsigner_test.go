package peer

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/tenancy"
)

// TestOpsViewOnceThroughKeyUpdates: the ops account's view of a tenant's
// stored events (a stream import) gets each event once, however often and
// however many of the peer's own users (the source watch, the tenant
// workers) put the peer's signing key in force in the tenant's account at
// once. Each such update of the tenant's claims makes the server renew the
// ops clients' subscriptions into the tenant's account; two at once left
// the ops client subscribed there twice, and every event of that tenant
// came twice (TestTenantsWalledOff, in CI).
func TestOpsViewOnceThroughKeyUpdates(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, p := startOperatorCentral(t)
	connect := func(creds []byte) *nats.Conn { return credsConn(t, p.ClientURL(), creds) }
	sysCreds, err := st.SystemCreds(0)
	if err != nil {
		t.Fatal(err)
	}
	sys := connect(sysCreds)
	var accounts []string
	for _, tn := range pushTenants(t, ctx, st, sys, "acme", "beta") {
		accounts = append(accounts, tn.Account)
	}
	ops, _, err := st.OpsAccount()
	if err != nil {
		t.Fatal(err)
	}
	if err := tenancy.Push(ctx, sys, ops); err != nil {
		t.Fatal(err)
	}
	opsCreds, err := st.OpsCreds("ops", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	opsNC := connect(opsCreds)
	view, err := opsNC.SubscribeSync(tenancy.OpsSubject("*"))
	if err != nil {
		t.Fatal(err)
	}
	if err := opsNC.Flush(); err != nil {
		t.Fatal(err)
	}

	signer, err := p.centralSigner()
	if err != nil {
		t.Fatal(err)
	}
	srv := p.Server()
	var pub *nats.Conn
	for round := range 40 {
		var wg sync.WaitGroup
		// Each tenant's account changes (a site added: a key of its
		// own), which drops the peer's key from the claims in force...
		for _, name := range []string{"acme", "beta"} {
			tn, _, err := st.EnsurePollerKey(name, fmt.Sprintf("s%d", round))
			if err != nil {
				t.Fatal(err)
			}
			if err := tenancy.Push(ctx, sys, tn.JWT); err != nil {
				t.Fatalf("round %d: push %s: %v", round, name, err)
			}
		}
		// ... and the peer's users put it back in force, side by side.
		conns := make([]*nats.Conn, 8)
		for i := range conns {
			wg.Go(func() {
				nc, err := signer.conn(srv, accounts[i%2], "test")
				if err != nil {
					t.Errorf("round %d: %v", round, err)
					return
				}
				conns[i] = nc
			})
		}
		wg.Wait()
		for i, nc := range conns {
			if nc != nil && i != 1 {
				nc.Close()
			}
		}
		if pub != nil {
			pub.Close()
		}
		pub = conns[1] // beta's
	}
	if t.Failed() || pub == nil {
		return
	}
	defer pub.Close()
	const events = 50
	for i := range events {
		if err := pub.Publish("stored.ev.s2.d"+string(rune('a'+i%26))+".trap", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Flush(); err != nil {
		t.Fatal(err)
	}
	got := 0
	eventually.True(t, 10*time.Second, "the ops view to get the tenant's events", func() bool {
		for {
			if _, err := view.NextMsg(10 * time.Millisecond); err != nil {
				return got >= events
			}
			got++
		}
	})
	// A copy too many would come right behind its first.
	for {
		if _, err := view.NextMsg(200 * time.Millisecond); err != nil {
			break
		}
		got++
	}
	if got != events {
		t.Fatalf("the ops view got %d messages for the tenant's %d events", got, events)
	}
}
