package poller_test

import (
	"context"
	"errors"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/bus/pollerlink"
	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/internal/freeport"
	"github.com/meshmon/meshmon/poller"
)

// serviceConfig is a poller service of the env's site named name, keeping
// its store in dir.
func serviceConfig(name, dir string) poller.ServiceConfig {
	cfg := poller.DefaultConfig()
	cfg.Name, cfg.Site = name, "lab"
	cfg.HeartbeatEvery = 200 * time.Millisecond
	return poller.ServiceConfig{Config: cfg, DataDir: dir, PeerWait: 10 * time.Second}
}

// TestService: a service started against its site's peer proves its
// identity, polls the site's devices as a member of the group, and stops
// on Close, which a second call answers the same.
func TestService(t *testing.T) {
	e := newEnv(t, 3, "127.71.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	goroutines := runtime.NumGoroutine()
	svc, stop, err := pollerlink.Start(ctx, serviceConfig("s1", t.TempDir()), bus.ConnConfig{URL: e.url}, nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-svc.Ready():
	case <-svc.Done():
		t.Fatalf("stopped before it was ready: %v", svc.Err())
	}
	eventually.True(t, 20*time.Second, "every device polled", func() bool {
		s := svc.Poller().Stats()
		return s.Devices == 3 && s.Published > 0
	})
	reg, err := bus.OpenRegistry(ctx, e.js)
	if err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 10*time.Second, "the poller in the registry", func() bool {
		ps, err := reg.List(ctx)
		return err == nil && len(ps) == 1 && ps[0].Name == "s1"
	})
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if err := svc.Close(); err != nil {
		t.Fatalf("a second Close: %v", err)
	}
	select {
	case <-svc.Done():
	default:
		t.Fatal("Done is open after Close")
	}
	// Close waits for what the service started: no goroutine of its
	// outlives it (the peer's for the closed connection go as they see it).
	eventually.True(t, 10*time.Second, "the service's goroutines gone", func() bool { return runtime.NumGoroutine() <= goroutines })
}

// TestServiceIdentity: a service refuses to start against another site's
// peer, or under the name of a poller that runs.
func TestServiceIdentity(t *testing.T) {
	e := newEnv(t, 1, "127.72.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ccfg := bus.ConnConfig{URL: e.url}

	wrong := serviceConfig("s1", t.TempDir())
	wrong.Site = "elsewhere"
	if _, _, err := pollerlink.Start(ctx, wrong, ccfg, nil); !errors.Is(err, bus.ErrWrongSite) {
		t.Fatalf("another site's peer: got %v, want %v", err, bus.ErrWrongSite)
	}

	_, stop, err := pollerlink.Start(ctx, serviceConfig("s1", t.TempDir()), ccfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if _, _, err := pollerlink.Start(ctx, serviceConfig("s1", t.TempDir()), ccfg, nil); !errors.Is(err, bus.ErrNameTaken) {
		t.Fatalf("a name in use: got %v, want %v", err, bus.ErrNameTaken)
	}
}

// TestServiceConfig: a service config names the field it breaks, and a
// service closed before it started does not start.
func TestServiceConfig(t *testing.T) {
	cfg := serviceConfig("s1", "")
	if err := cfg.Validate(); err == nil {
		t.Fatal("an empty data dir passed")
	}
	cfg.DataDir = filepath.Join(t.TempDir(), "p")
	if _, err := poller.NewService(cfg, poller.Link{}, nil); err == nil {
		t.Fatal("an empty link passed")
	}
	conn, err := pollerlink.Connect(bus.ConnConfig{URL: "nats://127.0.0.1:1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	svc, err := poller.NewService(cfg, conn.Link(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Close(); err != nil {
		t.Fatalf("Close before Start: %v", err)
	}
	if err := svc.Start(context.Background()); err == nil {
		t.Fatal("Start after Close started")
	}
}

func TestNameFromHost(t *testing.T) {
	for in, want := range map[string]string{"Host-1.example.com": "host-1", "my host": "my-host", "...": "poller", "--x--": "x"} {
		if got := poller.NameFromHost(in); got != want {
			t.Errorf("NameFromHost(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestServiceLatePeer: a service whose peer does not answer within
// PeerWait starts from its cache; when a peer of another site answers
// later, it stops with that error. Run returns nil when its ctx ends
// before the peer answered.
func TestServiceLatePeer(t *testing.T) {
	addr, err := freeport.TCP()
	if err != nil {
		t.Fatal(err)
	}
	cfg := serviceConfig("s1", t.TempDir())
	cfg.Site, cfg.PeerWait = "elsewhere", 100*time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	svc, stop, err := pollerlink.Start(ctx, cfg, bus.ConnConfig{URL: "nats://" + addr}, nil)
	if err != nil {
		t.Fatalf("start without a peer: %v", err)
	}
	defer stop()
	select {
	case <-svc.Ready():
	case <-svc.Done():
		t.Fatalf("stopped before the peer answered: %v", svc.Err())
	}
	startPeer(t, t.TempDir(), addr) // site lab
	select {
	case <-svc.Done():
	case <-ctx.Done():
		t.Fatal("still running a minute after a peer of another site answered")
	}
	if err := svc.Err(); !errors.Is(err, bus.ErrWrongSite) {
		t.Fatalf("stopped with %v, want %v", err, bus.ErrWrongSite)
	}

	conn, err := pollerlink.Connect(bus.ConnConfig{URL: "nats://127.0.0.1:1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cfg = serviceConfig("s2", t.TempDir())
	cfg.PeerWait = time.Minute
	run, err := poller.NewService(cfg, conn.Link(), nil)
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run.Run(rctx) }()
	rcancel()
	if err := <-done; err != nil {
		t.Fatalf("Run ended by its ctx before the peer answered: %v, want nil", err)
	}
}
