package console

import (
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// TestOneUserCannotHoldEverySession: a review held every session of the
// console with one NOC credential (logins are not limited once they
// succeed), and every other user got 503 for as long as it kept them
// alive. A user past MaxUserSessions now loses its least recently used
// session to its new one; others still log in while the console has
// room, and a user at its limit gets in even when the console is full.
func TestOneUserCannotHoldEverySession(t *testing.T) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	conn := func() *nats.Conn {
		nc, err := nats.Connect("", nats.InProcessServer(srv))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	now := time.Unix(1_700_000_000, 0)
	cfg := DefaultConfig()
	cfg.MaxSessions, cfg.MaxUserSessions, cfg.Now = 4, 2, func() time.Time { return now }
	ss := newSessions(cfg)
	mallory, alice, bob := viewer{User: "mallory", Account: "AX"}, viewer{User: "alice", Account: "AX"}, viewer{User: "alice", Account: "AY"}
	var held []*session
	for range 3 {
		now = now.Add(time.Second)
		se, ok := ss.add(conn(), mallory, nil)
		if !ok {
			t.Fatal("mallory's login refused")
		}
		held = append(held, se)
	}
	if ss.get(held[0].id) != nil || !held[0].nc.IsClosed() {
		t.Error("mallory's least recently used session lives on past her limit of 2")
	}
	if ss.get(held[1].id) == nil || ss.get(held[2].id) == nil {
		t.Error("mallory's two latest sessions ended")
	}
	// Another account's user of the same name is another user.
	for _, who := range []viewer{alice, bob} {
		if _, ok := ss.add(conn(), who, nil); !ok {
			t.Errorf("%s of %s refused beside mallory's two sessions", who.User, who.Account)
		}
	}
	// Full: a third user is refused, a user at its limit takes its own.
	carol := viewer{User: "carol", Account: "AX"}
	if !ss.full(carol) {
		t.Error("a console at MaxSessions is not full for a new user")
	}
	if _, ok := ss.add(conn(), carol, nil); ok {
		t.Error("a new user got a session of a full console")
	}
	if ss.full(mallory) {
		t.Error("a full console refuses a user at its own limit")
	}
	now = now.Add(time.Second)
	ss.get(held[1].id) // used: held[2] is now mallory's least recently used
	if _, ok := ss.add(conn(), mallory, nil); !ok || ss.get(held[2].id) != nil || ss.get(held[1].id) == nil {
		t.Error("mallory at her limit of a full console did not take her least recently used session")
	}
}

// TestClientKeyOfIPv6IsItsPrefix: the login limits count an IPv6 client
// by its /64, which a host is given whole: one address each try would
// otherwise escape them.
func TestClientKeyOfIPv6IsItsPrefix(t *testing.T) {
	for remote, want := range map[string]string{
		"192.0.2.7:51000":            "address 192.0.2.7",
		"[2001:db8:1:2:aaaa::1]:443": "address 2001:db8:1:2::/64",
		"[2001:db8:1:2:bbbb::9]:1":   "address 2001:db8:1:2::/64",
		"[::ffff:192.0.2.7]:51000":   "address ::ffff:192.0.2.7",
		"not an address":             "address not an address",
	} {
		r := &http.Request{RemoteAddr: remote}
		if got := clientKey(r); got != want {
			t.Errorf("%s: %q, want %q", remote, got, want)
		}
	}
}
