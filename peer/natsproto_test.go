package peer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/internal/wan"
)

// TestPublishRaw: a raw in-process connection delivers a header block as
// given, status line and all, as the peer's own user; a user the server
// does not know is refused with the server's word.
func TestPublishRaw(t *testing.T) {
	cfg := testConfig(t)
	cfg.Auth = Auth{User: "ops", Password: "raw-test-secret"}
	p := startPeer(t, cfg)
	nc, err := p.InProcessConn()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("raw.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := publishRaw(p.Server(), p.internalRawAuth(), "test", forgedHeartbeat, []string{"raw.a", "raw.b"}, 5*time.Second); err != nil {
		t.Fatalf("publishRaw as the peer's user: %v", err)
	}
	for _, want := range []string{"raw.a", "raw.b"} {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("%s: %v", want, err)
		}
		if m.Subject != want || len(m.Data) != 0 || m.Header.Get("Status") != "100" ||
			m.Header.Get("Description") != "Idle Heartbeat" || m.Header.Get("Nats-Last-Consumer") != "4611686018427387904" {
			t.Errorf("got %s %q with headers %v, want an idle heartbeat on %s", m.Subject, m.Data, m.Header, want)
		}
	}

	stranger, _ := nkeys.CreateUser()
	err = publishRaw(p.Server(), rawAuth{kp: stranger}, "test", forgedHeartbeat, []string{"raw.c"}, 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "Authorization Violation") {
		t.Errorf("publishRaw as an unknown nkey: %v, want the server's Authorization Violation", err)
	}
	if m, err := sub.NextMsg(200 * time.Millisecond); !errors.Is(err, nats.ErrTimeout) {
		t.Errorf("an unknown user's message was delivered: %v %v", m, err)
	}
}

// TestForgedHeartbeatRetriesSource: central's source of a site, flowing,
// takes the forged heartbeat as its consumer having delivered what it did
// not get, and asks the site again at once (a consumer reset request
// reaches the site's JetStream), with nothing lost or stored twice. A
// flowing source never asks by itself, so the reset is the heartbeat's.
func TestForgedHeartbeatRetriesSource(t *testing.T) {
	central, site, _ := centralAndParis(t)
	cjs, sjs := peerJS(t, central), peerJS(t, site)

	snc, err := site.InProcessConn()
	if err != nil {
		t.Fatal(err)
	}
	defer snc.Close()
	resets, err := snc.SubscribeSync(fmt.Sprintf("$JS.API.CONSUMER.RESET.%s.>", bus.EventsStream))
	if err != nil {
		t.Fatal(err)
	}
	if err := snc.Flush(); err != nil {
		t.Fatal(err)
	}
	events := sourceKey{stream: bus.EventsStream, site: "paris"}
	eventually.NoError(t, 20*time.Second, "the source to ask the site for its consumer again", func() error {
		if err := retrySources(central.Server(), central.internalRawAuth(), []sourceKey{events}); err != nil {
			return err
		}
		if _, err := resets.NextMsg(time.Second); err != nil {
			return fmt.Errorf("no consumer reset request at the site: %w", err)
		}
		return nil
	})
	publishSite(t, sjs, "paris", 10, 10)
	waitCount(t, cjs, "paris", 20, 20*time.Second)
}

// TestPublishRawAsSignerUser: in operator mode the raw connection is the
// source watch's own user in a tenant's account (a JWT signed with the
// peer's key, put in force by centralSigner), and its message is delivered
// in that account only.
func TestPublishRawAsSignerUser(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, p := startOperatorCentral(t)
	sysCreds, err := st.SystemCreds(0)
	if err != nil {
		t.Fatal(err)
	}
	var accounts []string
	for _, tn := range pushTenants(t, ctx, st, credsConn(t, p.ClientURL(), sysCreds), "acme", "beta") {
		accounts = append(accounts, tn.Account)
	}
	signer, err := p.centralSigner()
	if err != nil {
		t.Fatal(err)
	}
	srv := p.Server()
	subs := make([]*nats.Subscription, 2)
	for i, acc := range accounts {
		nc, err := signer.conn(srv, acc, "test")
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		if subs[i], err = nc.SubscribeSync("raw.>"); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	nc, auth, err := signer.connAuth(srv, accounts[0], "test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := publishRaw(srv, auth, "test", forgedHeartbeat, []string{"raw.a"}, 5*time.Second); err != nil {
		t.Fatalf("publishRaw as the signer's user: %v", err)
	}
	if m, err := subs[0].NextMsg(5 * time.Second); err != nil || m.Header.Get("Status") != "100" {
		t.Errorf("acme got %v, %v; want the heartbeat", m, err)
	}
	if m, err := subs[1].NextMsg(200 * time.Millisecond); !errors.Is(err, nats.ErrTimeout) {
		t.Errorf("beta got acme's message: %v %v", m, err)
	}
}

// TestLostSourceRequestSentAgain: a source's request for its consumer that
// went out while its site was cut off is seen by its reply (scoped to the
// site, js_api_reply_v2), and once the site is back the watch sends it
// again: the site's answer comes to that reply. Nothing else answers it:
// the site never got the request, and JetStream asks again, if at all,
// with a new reply.
func TestLostSourceRequestSentAgain(t *testing.T) {
	ctx := t.Context()
	central, site, px := centralAndParis(t)
	cjs, sjs := peerJS(t, central), peerJS(t, site)
	srv := central.Server()
	acc, err := srv.LookupAccount(central.cfg.Tenant)
	if err != nil {
		t.Fatal(err)
	}
	cnc, err := central.InProcessConn()
	if err != nil {
		t.Fatal(err)
	}
	defer cnc.Close()
	events := sourceKey{stream: bus.EventsStream, site: "paris"}
	// JetStream gives up on a request after 5 s and asks again with a new
	// reply. An attempt in which the request was no longer out when the
	// site came back (a slow run) shows nothing, and is made again.
	for attempt := 1; ; attempt++ {
		if attempt > 5 {
			t.Fatal("in 5 attempts, the source's request was never still out when the site came back")
		}
		px.Cut(true)
		eventually.NoError(t, 30*time.Second, "paris out of reach", func() error {
			if siteReachable(acc, "paris", bus.EventsStream) {
				return errors.New("central still reaches paris")
			}
			return nil
		})
		publishSite(t, sjs, "paris", 10*attempt, 10)
		// Set again while the site is away, the source sends its request
		// into the cut.
		if err := bus.KickSources(ctx, cjs, bus.EventsStream, []string{"paris"}); err != nil {
			t.Fatal(err)
		}
		var reply string
		eventually.NoError(t, 10*time.Second, "the source's request out", func() error {
			pending, err := pendingSourceRequests(srv, acc.Name)
			if err != nil {
				return err
			}
			if reply = pending[events]; reply == "" {
				return fmt.Errorf("no request out for %v: %v", events, pending)
			}
			return nil
		})
		if !strings.HasPrefix(reply, "$JSC.R.paris.") {
			t.Fatalf("the request's reply is %q, want one scoped to the site ($JSC.R.paris.)", reply)
		}
		answers, err := cnc.SubscribeSync(reply)
		if err != nil {
			t.Fatal(err)
		}
		if err := cnc.Flush(); err != nil {
			t.Fatal(err)
		}
		px.Cut(false)
		eventually.NoError(t, 30*time.Second, "paris back", func() error {
			if !siteReachable(acc, "paris", bus.EventsStream) {
				return errors.New("central does not reach paris")
			}
			return nil
		})
		pending, err := pendingSourceRequests(srv, acc.Name)
		if err != nil {
			t.Fatal(err)
		}
		if pending[events] != reply {
			t.Logf("attempt %d: the request on %s was no longer out when paris came back; again", attempt, reply)
			_ = answers.Unsubscribe()
			waitCount(t, cjs, "paris", uint64(10+10*attempt), 30*time.Second)
			continue
		}
		m, err := answers.NextMsg(30 * time.Second)
		if err != nil {
			t.Fatalf("no answer on the lost request's reply %s after the site came back: %v", reply, err)
		}
		if !strings.Contains(string(m.Data), `"type":"io.nats.jetstream.api.v1.consumer_reset_response"`) || strings.Contains(string(m.Data), `"error"`) {
			t.Errorf("the answer on %s: %s, want the site's consumer reset", reply, m.Data)
		}
		waitCount(t, cjs, "paris", uint64(10+10*attempt), 30*time.Second)
		return
	}
}

// centralAndParis starts a central peer and a site, paris, whose link runs
// through a proxy that can cut it; central holds the site's first 10
// events.
func centralAndParis(t *testing.T) (central, site *Peer, px *wan.Proxy) {
	t.Helper()
	central = startPeer(t, centralConfig(t, "c1"))
	cjs := peerJS(t, central)
	if err := bus.AddSite(t.Context(), cjs, "paris", time.Now()); err != nil {
		t.Fatal(err)
	}
	join, err := bus.Join(t.Context(), cjs)
	if err != nil {
		t.Fatal(err)
	}
	if px, err = wan.NewProxy(strings.TrimPrefix(join.Central[0], "nats-leaf://")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(px.Close)
	join.Central = []string{"nats-leaf://" + px.Addr()}
	site = startPeer(t, siteConfig(t, "paris", join))
	publishSite(t, peerJS(t, site), "paris", 0, 10)
	waitCount(t, cjs, "paris", 10, 20*time.Second)
	return central, site, px
}
