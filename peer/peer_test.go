package peer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/internal/syncbuf"
)

func testConfig(t testing.TB) Config {
	cfg := DefaultConfig()
	cfg.Name = "test-" + strings.ReplaceAll(t.Name(), "/", "-")
	cfg.Site = "hq"
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.Insecure = true // tests of TLS give a certificate (tls_test.go)
	return cfg
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func startPeer(t testing.TB, cfg Config) *Peer {
	t.Helper()
	var log *slog.Logger
	if os.Getenv("MESHMON_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("peer", cfg.Name)
	}
	p, err := New(cfg, log)
	if err != nil {
		t.Fatalf("new: %v", err)
	}
	if err := p.Start(testCtx(t)); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err == nil || !strings.Contains(err.Error(), "--tls-cert") {
		t.Fatalf("default config without a certificate: %v, want an error naming --tls-cert", err)
	}
	def := DefaultConfig()
	def.Insecure = true
	if err := def.Validate(); err != nil {
		t.Fatalf("default: %v", err)
	}
	tests := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no name at central", func(c *Config) { c.Role, c.Site, c.Name = RoleCentral, "", "" }, "name"},
		{"name with a space", func(c *Config) { c.Name = "s 1" }, "name"},
		{"bad site", func(c *Config) { c.Site = "Bad.Site" }, "site"},
		{"bad listen", func(c *Config) { c.Listen = "4222" }, "listen"},
		{"bad port", func(c *Config) { c.Listen = "h:99999" }, "listen"},
		{"no data dir", func(c *Config) { c.DataDir = "" }, "data dir"},
		{"two auths", func(c *Config) { c.Auth = Auth{User: "u", Password: "p", NKey: "UABC"} }, "auth"},
		{"user only", func(c *Config) { c.Auth = Auth{User: "u"} }, "auth"},
		{"bad nkey", func(c *Config) { c.Auth = Auth{NKey: "UABC"} }, "nkey"},
		{"limits", func(c *Config) { c.Limits.Replicas = 2 }, "replicas"},
		{"max store", func(c *Config) { c.MaxStore = -1 }, "max store"},
		{"http", func(c *Config) { c.HTTPListen = "x" }, "http listen"},
		{"trust at a site", func(c *Config) { c.Trust = "trust.json" }, "trust is for central"},
		{"trust with auth", func(c *Config) {
			c.Role, c.Trust, c.Auth = RoleCentral, "trust.json", Auth{User: "u", Password: "password-long"}
		}, "auth is set with trust"},
		{"no trust file", func(c *Config) { c.Role, c.Trust = RoleCentral, "/nonexistent/trust.json" }, "trust file"},
		{"tenants at central", func(c *Config) { c.Role, c.Tenants = RoleCentral, []SiteTenant{{Name: "acme"}} }, "tenants are for site peers"},
		{"tenants without trust", func(c *Config) { c.Tenants = []SiteTenant{{Name: "acme"}} }, "operator's trust"},
		{"alarm late after", func(c *Config) { c.Role, c.AlarmLateAfter = RoleCentral, -time.Second }, "alarm late after -1s must not be negative"},
		{"notify deny net", func(c *Config) { c.Role, c.NotifyDenyNets = RoleCentral, []string{"10.0.0.0/8", "10.1.2.3"} }, `notify deny net "10.1.2.3" is not a network in CIDR form`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			c.Insecure = true
			tt.edit(&c)
			err := c.Validate()
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want ErrInvalidConfig naming %q", err, tt.want)
			}
		})
	}
	c := DefaultConfig()
	c.Site = "Bad"
	if err := c.Validate(); !errors.Is(err, meshmon.ErrInvalidName) {
		t.Fatalf("site error %v does not wrap meshmon.ErrInvalidName", err)
	}
}

// TestNotifyReach: a central peer's --notify-allow-loopback and
// --notify-deny-net reach its notification runners.
func TestNotifyReach(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Role, cfg.NotifyAllowLoopback, cfg.NotifyDenyNets = RoleCentral, true, []string{"10.20.0.0/16", "fd00::/8"}
	r := (&Peer{cfg: cfg}).notifyReach()
	if !r.AllowLoopback || len(r.Deny) != 2 || r.Deny[0].String() != "10.20.0.0/16" || r.Deny[1].String() != "fd00::/8" {
		t.Fatalf("reach %+v", r)
	}
	if r := (&Peer{cfg: DefaultConfig()}).notifyReach(); r.AllowLoopback || len(r.Deny) != 0 {
		t.Fatalf("default reach %+v, want loopback refused and no network denied", r)
	}
}

func TestStartStreams(t *testing.T) {
	cfg := testConfig(t)
	cfg.Limits.EventsMaxAge = 48 * time.Hour
	cfg.Limits.MetricsMaxBytes = 1 << 30
	p := startPeer(t, cfg)
	if !p.Ready() || !strings.HasPrefix(p.ClientURL(), "nats://127.0.0.1:") || strings.HasSuffix(p.ClientURL(), ":0") {
		t.Fatalf("ready %v, url %q", p.Ready(), p.ClientURL())
	}
	opts := p.Server().JetStreamConfig()
	if opts == nil || opts.Domain != "hq" || !opts.SyncAlways {
		t.Fatalf("jetstream config: %+v", opts)
	}
	nc, err := p.InProcessConn()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	s, err := js.Stream(ctx, bus.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	if c := s.CachedInfo().Config; c.MaxAge != 48*time.Hour || c.Storage != jetstream.FileStorage {
		t.Fatalf("events: %+v", c)
	}
	s, err = js.Stream(ctx, bus.MetricsStream)
	if err != nil {
		t.Fatal(err)
	}
	if c := s.CachedInfo().Config; c.MaxBytes != 1<<30 {
		t.Fatalf("metrics: %+v", c)
	}
	for _, b := range []string{bus.DevicesBucket, bus.PollersBucket} {
		if _, err := js.KeyValue(ctx, b); err != nil {
			t.Fatalf("bucket %s: %v", b, err)
		}
	}
}

func TestPasswordAuth(t *testing.T) {
	cfg := testConfig(t)
	cfg.Auth = Auth{User: "noc", Password: "s3cret-s3cret"}
	p := startPeer(t, cfg)
	ctx := testCtx(t)
	if _, err := bus.ConnectWait(ctx, bus.ConnConfig{URL: p.ClientURL(), User: "noc", Password: "wrong"}); err == nil {
		t.Fatal("wrong password accepted")
	}
	if _, err := bus.ConnectWait(ctx, bus.ConnConfig{URL: p.ClientURL()}); err == nil {
		t.Fatal("no credentials accepted")
	}
	nc, err := bus.ConnectWait(ctx, bus.ConnConfig{URL: p.ClientURL(), User: "noc", Password: "s3cret-s3cret"})
	if err != nil {
		t.Fatalf("right password: %v", err)
	}
	nc.Close()
	// The in-process connection needs no credentials.
	nc, err = p.InProcessConn()
	if err != nil {
		t.Fatalf("in-process: %v", err)
	}
	nc.Close()
}

func TestRestartKeepsMessages(t *testing.T) {
	cfg := testConfig(t)
	ctx := testCtx(t)
	p := startPeer(t, cfg)
	nc, err := p.InProcessConn()
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []meshmon.Message
	for i := range 10 {
		msgs = append(msgs, meshmon.Message{Stream: meshmon.StreamEvents, Site: "hq", Device: "sw1", Kind: "node_down", ID: fmt.Sprint(i), Data: []byte("x")})
	}
	if n, err := bus.NewPublisher(js).PublishBatch(ctx, msgs); err != nil || n != 10 {
		t.Fatalf("publish: %d, %v", n, err)
	}
	nc.Close()
	p.Close()

	p2 := startPeer(t, cfg)
	nc2, err := p2.InProcessConn()
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	js2, err := jetstream.New(nc2)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js2.Stream(ctx, bus.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != 10 {
		t.Fatalf("%d messages after restart, want 10", n)
	}
}

func TestAddressInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := testConfig(t)
	cfg.Listen = ln.Addr().String()
	p, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	err = p.Start(testCtx(t))
	if !errors.Is(err, ErrAddrInUse) {
		t.Fatalf("got %v, want ErrAddrInUse", err)
	}
	if want := "listen " + cfg.Listen + ": address already in use"; err.Error() != want {
		t.Fatalf("got %q, want %q", err, want)
	}
	if p.Ready() {
		t.Fatal("ready after a failed start")
	}
}

func TestCloseTwiceAndNoLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	p, err := New(testConfig(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	nc, err := p.InProcessConn()
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	p.Close()
	p.Close()
	if p.Ready() {
		t.Fatal("ready after close")
	}
	if _, err := p.InProcessConn(); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("in-process after close: %v", err)
	}
	eventually.NoError(t, 10*time.Second, "the goroutines to end", func() error {
		if n := runtime.NumGoroutine(); n > before {
			return fmt.Errorf("%d goroutines, %d before start", n, before)
		}
		return nil
	})
}

func TestNKeyAuthAndLogger(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	seedFile := filepath.Join(t.TempDir(), "user.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.Auth = Auth{NKey: pub}
	var logs syncbuf.Buffer
	p, err := New(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	ctx := testCtx(t)
	nc, err := bus.ConnectWait(ctx, bus.ConnConfig{URL: p.ClientURL(), NKeySeedFile: seedFile})
	if err != nil {
		t.Fatalf("nkey: %v", err)
	}
	nc.Close()
	if _, err := bus.ConnectWait(ctx, bus.ConnConfig{URL: p.ClientURL()}); err == nil {
		t.Fatal("no credentials accepted")
	}
	if s := logs.String(); !strings.Contains(s, "level=INFO") || !strings.Contains(s, "Server is ready") {
		t.Fatalf("server log not in slog:\n%s", s)
	}
}
