package notifybus_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/bus/notifybus"
)

// TestOpenFitsASmallTenant: a tenant's account with 64 MiB of disk opens
// its notification store, and the delivery log fits in it (a fixed
// 256 MiB log was refused, and the runner failed again and again).
func TestOpenFitsASmallTenant(t *testing.T) {
	acc := server.NewAccount("T")
	opts := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
		Accounts: []*server.Account{acc}, Users: []*server.User{{Username: "u", Password: "p", Account: acc}}}
	srv := startServer(t, opts)
	a, err := srv.LookupAccount("T")
	if err != nil {
		t.Fatal(err)
	}
	const disk = 64 << 20
	if err := a.EnableJetStream(map[string]server.JetStreamAccountLimits{"": {MaxStore: disk, MaxMemory: -1, MaxStreams: -1, MaxConsumers: -1}}, nil); err != nil {
		t.Fatal(err)
	}
	js := connectJS(t, srv, nats.UserInfo("u", "p"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := notifybus.Open(ctx, js); err != nil {
		t.Fatalf("open a 64 MiB tenant's notification store: %v", err)
	}
	s, err := js.Stream(ctx, notifybus.LogStream)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config.MaxBytes; got <= 0 || got > disk/10 {
		t.Errorf("delivery log of a 64 MiB tenant: %d bytes, want 1 to %d", got, disk/10)
	}
}

// TestOpenFitsAFullPeer: outside operator mode the account has no limit to
// size the delivery log by, and a peer whose streams reserve most of its
// disk has no room for 256 MiB: the log is made smaller, not refused (a
// central peer on a small disk refused it again and again).
func TestOpenFitsAFullPeer(t *testing.T) {
	const disk = 300 << 20
	opts := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), JetStreamMaxStore: disk, NoLog: true, NoSigs: true}
	js := connectJS(t, startServer(t, opts))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// EVENTS and METRICS, say, reserve all but 100 MiB.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "BIG", Subjects: []string{"big"}, MaxBytes: disk - 100<<20}); err != nil {
		t.Fatal(err)
	}
	if _, err := notifybus.Open(ctx, js); err != nil {
		t.Fatalf("open the notification store on a nearly full peer: %v", err)
	}
	s, err := js.Stream(ctx, notifybus.LogStream)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config.MaxBytes; got <= 0 || got > 100<<20 {
		t.Errorf("delivery log on a peer with 100 MiB left: %d bytes, want 1 to %d", got, 100<<20)
	}
}

// startServer runs a nats-server of opts until the test ends.
func startServer(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	return srv
}

// connectJS connects to srv with opts, until the test ends.
func connectJS(t *testing.T, srv *server.Server, opts ...nats.Option) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(srv.ClientURL(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}
