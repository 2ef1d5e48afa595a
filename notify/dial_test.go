package notify_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/meshmon/meshmon/notify"
)

// TestDeliveriesStayOffCentralsOwnAddresses: a channel is a tenant
// admin's to point, and central connects. A review pointed one at
// central's own NATS port (its banner came back in the delivery log's
// error) and had an https webhook redirect to http on loopback, where
// the signed body went. Loopback is refused unless the peer allows it,
// link-local (a cloud's metadata service) always, before any packet is
// sent; a redirect is a failed delivery, never followed.
func TestDeliveriesStayOffCentralsOwnAddresses(t *testing.T) {
	ctx := context.Background()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	hook := notify.Channel{Name: "hook", Type: notify.TypeWebhook, URL: srv.URL, AllowPlaintext: true}
	err := (&notify.Sender{}).Send(ctx, "acme", hook, []byte("k"), "d1", message())
	if !errors.Is(err, notify.ErrRefusedAddress) || !strings.Contains(err.Error(), "--notify-allow-loopback") || hits.Load() != 0 {
		t.Errorf("a webhook on loopback: %v (%d requests), want refused naming the flag", err, hits.Load())
	}
	if err := (&notify.Sender{Reach: notify.Reach{AllowLoopback: true}}).Send(ctx, "acme", hook, []byte("k"), "d2", message()); err != nil || hits.Load() != 1 {
		t.Errorf("a webhook on loopback, allowed: %v (%d requests)", err, hits.Load())
	}
	mail := notify.Channel{Name: "mail", Type: notify.TypeEmail, SMTP: srv.Listener.Addr().String(), From: "a@example.net", To: []string{"b@example.net"}, AllowPlaintext: true}
	if err := (&notify.Sender{}).Send(ctx, "acme", mail, nil, "d3", message()); !errors.Is(err, notify.ErrRefusedAddress) {
		t.Errorf("an SMTP server on loopback: %v, want refused", err)
	}
	for _, u := range []string{"http://169.254.169.254/latest/meta-data/", "http://[fe80::1]:80/", "http://0.0.0.0:80/", "http://224.0.0.1/"} {
		ch := notify.Channel{Name: "meta", Type: notify.TypeWebhook, URL: u, AllowPlaintext: true}
		if err := (&notify.Sender{Reach: notify.Reach{AllowLoopback: true}}).Send(ctx, "acme", ch, []byte("k"), "d4", message()); !errors.Is(err, notify.ErrRefusedAddress) {
			t.Errorf("%s: %v, want refused", u, err)
		}
	}
	// The operator's own networks (--notify-deny-net), loopback here so
	// the test has a real receiver to keep unreached.
	deny, err := notify.ParseDenyNets([]string{"10.0.0.0/8", " 127.0.0.0/8"})
	if err != nil {
		t.Fatal(err)
	}
	denied := notify.Reach{AllowLoopback: true, Deny: deny}
	before := hits.Load()
	err = (&notify.Sender{Reach: denied}).Send(ctx, "acme", hook, []byte("k"), "d6", message())
	if !errors.Is(err, notify.ErrRefusedAddress) || !strings.Contains(err.Error(), "127.0.0.0/8") || !strings.Contains(err.Error(), "--notify-deny-net") || hits.Load() != before {
		t.Errorf("a webhook in a denied network: %v (%d requests), want refused naming the network and the flag", err, hits.Load()-before)
	}
	if err := (&notify.Sender{Reach: denied}).Send(ctx, "acme", mail, nil, "d7", message()); !errors.Is(err, notify.ErrRefusedAddress) {
		t.Errorf("an SMTP server in a denied network: %v, want refused", err)
	}
	if err := (&notify.Sender{Reach: notify.Reach{AllowLoopback: true, Deny: deny[:1]}}).Send(ctx, "acme", hook, []byte("k"), "d8", message()); err != nil || hits.Load() != before+1 {
		t.Errorf("a webhook outside the denied networks: %v (%d requests)", err, hits.Load()-before)
	}

	// A redirect is the delivery's answer, a failure: its target is
	// never asked.
	var redirected atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { redirected.Add(1) }))
	defer target.Close()
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/latest/meta-data/", http.StatusTemporaryRedirect)
	}))
	defer redirect.Close()
	ch := notify.Channel{Name: "hook", Type: notify.TypeWebhook, URL: redirect.URL, AllowPlaintext: true}
	err = (&notify.Sender{Reach: notify.Reach{AllowLoopback: true}}).Send(ctx, "acme", ch, []byte("k"), "d5", message())
	if !errors.Is(err, notify.ErrStatus) || !strings.Contains(err.Error(), "307") || redirected.Load() != 0 {
		t.Errorf("a redirecting webhook: %v (%d requests to its target), want HTTP 307 and none", err, redirected.Load())
	}
}

// TestParseDenyNets: --notify-deny-net takes networks in CIDR form, IPv4
// and IPv6, and names the value it cannot take.
func TestParseDenyNets(t *testing.T) {
	got, err := notify.ParseDenyNets([]string{"10.1.2.3/8", "fd00::/8", "::ffff:192.168.7.9/120"})
	if err != nil || len(got) != 3 || got[0].String() != "10.0.0.0/8" || got[1].String() != "fd00::/8" || got[2].String() != "192.168.7.0/24" {
		t.Fatalf("ParseDenyNets: %v, %v; want 10.0.0.0/8, fd00::/8 and the mapped network as 192.168.7.0/24", got, err)
	}
	for _, bad := range []string{"10.0.0.0/33", "10.0.0.1", "lan", ""} {
		if _, err := notify.ParseDenyNets([]string{bad}); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", bad)) {
			t.Errorf("ParseDenyNets(%q): %v, want an error naming it", bad, err)
		}
	}
}
