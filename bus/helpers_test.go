package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// testServer is an embedded JetStream server on a random port with its
// data in a temporary directory.
type testServer struct {
	srv  *server.Server
	opts *server.Options
}

func serverOpts(tb testing.TB, dir string) *server.Options {
	tb.Helper()
	return &server.Options{
		ServerName: fmt.Sprintf("bus-test-%d", time.Now().UnixNano()),
		Host:       "127.0.0.1",
		Port:       -1,
		JetStream:  true,
		StoreDir:   dir,
		SyncAlways: true,
		NoSigs:     true,
		NoLog:      true,
	}
}

// startServer starts a server and shuts it down at the end of the test.
func startServer(tb testing.TB, opts *server.Options) *testServer {
	tb.Helper()
	srv, err := server.NewServer(opts)
	if err != nil {
		tb.Fatalf("new server: %v", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		tb.Fatal("server not ready")
	}
	tb.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	return &testServer{srv: srv, opts: opts}
}

// runJS starts a server in a temporary directory, connects to it, ensures
// the streams and returns the connection and its JetStream context.
func runJS(tb testing.TB, jsOpts ...jetstream.JetStreamOpt) (*testServer, *nats.Conn, jetstream.JetStream) {
	tb.Helper()
	ts := startServer(tb, serverOpts(tb, tb.TempDir()))
	nc, js := connect(tb, ts.srv.ClientURL(), jsOpts...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := EnsureStreams(ctx, js, DefaultStreamLimits()); err != nil {
		tb.Fatalf("ensure streams: %v", err)
	}
	return ts, nc, js
}

func connect(tb testing.TB, url string, jsOpts ...jetstream.JetStreamOpt) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	nc, err := Connect(ConnConfig{URL: url, Name: tb.Name()})
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jsOpts...)
	if err != nil {
		tb.Fatalf("jetstream: %v", err)
	}
	return nc, js
}

func testCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
