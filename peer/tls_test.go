package peer

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/pki"
)

// testPKI is a CA in a temporary directory that issues certificates for
// loopback.
type testPKI struct {
	t   *testing.T
	ca  *pki.CA
	dir string
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	ca, err := pki.NewCA("test mesh CA", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := ca.Save(dir); err != nil {
		t.Fatal(err)
	}
	return &testPKI{t: t, ca: ca, dir: dir}
}

func (k *testPKI) caFile() string { return filepath.Join(k.dir, pki.CAFile) }

// issue writes a certificate for name (valid for 127.0.0.1 and localhost)
// into a new directory and returns the peer's TLS files.
func (k *testPKI) issue(name string) TLS {
	k.t.Helper()
	dir := k.t.TempDir()
	files := TLS{Cert: filepath.Join(dir, pki.CertFile), Key: filepath.Join(dir, pki.KeyFile), CA: k.caFile()}
	k.issueTo(name, files)
	return files
}

func (k *testPKI) issueTo(name string, files TLS) *x509.Certificate {
	k.t.Helper()
	is, err := k.ca.Issue(name, []string{"127.0.0.1", "localhost"}, time.Now(), 0)
	if err != nil {
		k.t.Fatal(err)
	}
	if err := pki.WriteSecret(files.Key, is.KeyPEM); err != nil {
		k.t.Fatal(err)
	}
	if err := pki.WriteFile(files.Cert, is.CertPEM, 0o644); err != nil {
		k.t.Fatal(err)
	}
	certs, err := pki.ParseCerts(is.CertPEM)
	if err != nil {
		k.t.Fatal(err)
	}
	return certs[0]
}

func tlsConfig(t *testing.T, name string, k *testPKI) Config {
	cfg := testConfig(t)
	cfg.Name = name
	cfg.Insecure = false
	cfg.TLS = k.issue(name)
	return cfg
}

// logWatch is a slog handler that keeps every message (with its
// attributes), for tests that wait for a log line.
type logWatch struct {
	mu    sync.Mutex
	lines []string
}

func (w *logWatch) Enabled(context.Context, slog.Level) bool { return true }
func (w *logWatch) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Time.Format("15:04:05.000 "))
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
	w.mu.Lock()
	w.lines = append(w.lines, b.String())
	w.mu.Unlock()
	return nil
}
func (w *logWatch) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *logWatch) WithGroup(string) slog.Handler      { return w }

func (w *logWatch) has(sub string) error { return w.hasSince(0, sub) }

// mark returns where the next line will be, for hasSince.
func (w *logWatch) mark() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.lines)
}

// hasSince is has among the lines from mark on.
func (w *logWatch) hasSince(mark int, sub string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, l := range w.lines[mark:] {
		if strings.Contains(l, sub) {
			return nil
		}
	}
	return fmt.Errorf("no log line with %q among %d", sub, len(w.lines)-mark)
}

// matching returns the lines that hold sub.
func (w *logWatch) matching(sub string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, l := range w.lines {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return out
}

func startPeerLog(t *testing.T, cfg Config, w *logWatch) *Peer {
	t.Helper()
	p, err := New(cfg, slog.New(w))
	if err != nil {
		t.Fatalf("new: %v", err)
	}
	if err := p.Start(testCtx(t)); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// plaintextConnect speaks NATS without TLS to addr: it reads the INFO line
// and sends CONNECT and PING. It returns nil only if the server answers
// PONG.
func plaintextConnect(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil {
		return fmt.Errorf("no INFO: %w", err)
	}
	if _, err := c.Write([]byte("CONNECT {\"verbose\":false,\"pedantic\":false}\r\nPING\r\n")); err != nil {
		return err
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("no PONG: %w", err)
		}
		if strings.HasPrefix(line, "PONG") {
			return nil
		}
		if strings.HasPrefix(line, "-ERR") {
			return errors.New(strings.TrimSpace(line))
		}
	}
}

func TestTLSValidate(t *testing.T) {
	k := newTestPKI(t)
	other := newTestPKI(t)
	good := k.issue("good")
	foreign := other.issue("foreign")
	tests := []struct {
		name string
		edit func(*Config)
		want string // "" means valid
	}{
		{"no cert, not insecure", func(c *Config) { c.Insecure = false }, "--tls-cert, --tls-key and --tls-ca"},
		{"insecure", func(c *Config) {}, ""},
		{"cert", func(c *Config) { c.Insecure, c.TLS = false, good }, ""},
		{"cert without key", func(c *Config) { c.TLS = TLS{Cert: good.Cert, CA: good.CA} }, "go together"},
		{"cert of another CA", func(c *Config) { c.TLS = TLS{Cert: foreign.Cert, Key: foreign.Key, CA: good.CA} }, "not of this CA"},
		{"key of another cert", func(c *Config) { c.TLS = TLS{Cert: good.Cert, Key: foreign.Key, CA: good.CA} }, "tls cert"},
		{"missing cert file", func(c *Config) { c.TLS = TLS{Cert: "/nonexistent", Key: good.Key, CA: good.CA} }, "tls cert"},
		{"open listener", func(c *Config) { c.Insecure, c.TLS, c.Listen = false, good, "0.0.0.0:4222" }, "not a loopback address"},
		{"open listener, insecure", func(c *Config) { c.Listen = "0.0.0.0:4222" }, ""},
		{"open listener with auth", func(c *Config) {
			c.Insecure, c.TLS, c.Listen, c.Auth = false, good, ":4222", Auth{User: "noc", Password: "twelve-chars"}
		}, ""},
		{"short password", func(c *Config) { c.Auth = Auth{User: "noc", Password: "eleven-char"} }, "at least 12"},
		{"http without password", func(c *Config) { c.Insecure, c.TLS, c.HTTPListen = false, good, ":8222" }, "http monitoring without a password"},
		{"http short password", func(c *Config) { c.HTTPListen, c.HTTPUser, c.HTTPPassword = ":8222", "mon", "short" }, "at least 12"},
		{"http user only", func(c *Config) { c.HTTPListen, c.HTTPUser = ":8222", "mon" }, "go together"},
		{"site link without CA", func(c *Config) {
			c.Insecure, c.TLS, c.Central, c.LeafUser, c.LeafPassword = false, good, []string{"nats-leaf://127.0.0.1:7422"}, "leaf-default", "twelve-chars"
			c.TLS = TLS{}
			c.Insecure = false
		}, "--tls-cert"},
		{"bad central CA", func(c *Config) {
			c.Central, c.LeafUser, c.LeafPassword, c.CentralCA = []string{"nats-leaf://127.0.0.1:7422"}, "leaf-default", "twelve-chars", "not a PEM"
		}, "central's CA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig(t)
			tt.edit(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("got %v, want valid", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want ErrInvalidConfig naming %q", err, tt.want)
			}
		})
	}
	if got := (Config{HTTPListen: ":8222"}).httpAddr(); got != "127.0.0.1:8222" {
		t.Errorf("http addr of :8222 is %s, want 127.0.0.1:8222", got)
	}
	if got := (Config{HTTPListen: "0.0.0.0:8222"}).httpAddr(); got != "0.0.0.0:8222" {
		t.Errorf("http addr of 0.0.0.0:8222 is %s", got)
	}
}

// TestTLSClientListener: clients must speak TLS and verify the peer
// against the mesh's CA; the in-process connection still works.
func TestTLSClientListener(t *testing.T) {
	k := newTestPKI(t)
	p := startPeer(t, tlsConfig(t, "tls-client", k))
	addr := strings.TrimPrefix(p.ClientURL(), "nats://")
	if err := plaintextConnect(addr); err == nil {
		t.Fatal("a plaintext client got PONG")
	}
	ctx := testCtx(t)
	if _, err := bus.ConnectWait(ctx, bus.ConnConfig{URL: p.ClientURL()}); err == nil {
		t.Fatal("a client without the CA connected")
	}
	if _, err := bus.ConnectWait(ctx, bus.ConnConfig{URL: p.ClientURL(), CAFile: newTestPKI(t).caFile()}); err == nil {
		t.Fatal("a client verifying against another CA connected")
	}
	nc, err := bus.ConnectWait(ctx, bus.ConnConfig{URL: p.ClientURL(), CAFile: k.caFile()})
	if err != nil {
		t.Fatalf("client with the CA: %v", err)
	}
	defer nc.Close()
	if !nc.TLSRequired() {
		t.Fatal("the connection is not TLS")
	}
	if _, err := nc.Request("$JS.API.INFO", nil, 2*time.Second); err != nil {
		t.Fatalf("request over TLS: %v", err)
	}
	in, err := p.InProcessConn()
	if err != nil {
		t.Fatalf("in-process: %v", err)
	}
	in.Close()
}

// attacker starts an in-process nats-server that dials routeURL as an
// attacker would: the cluster name the route port's INFO shows, the
// tenant's account declared, tc as its route TLS (nil: none).
func attacker(t *testing.T, clusterName, routeURL string, tc *tls.Config) (*server.Server, *srvLog) {
	t.Helper()
	o := &server.Options{ServerName: "attacker", Host: "127.0.0.1", Port: -1, NoSigs: true}
	if err := o.ProcessConfigString(fmt.Sprintf(`accounts: { %s: {} }`, DefaultTenant)); err != nil {
		t.Fatal(err)
	}
	o.Cluster.Name, o.Cluster.Host, o.Cluster.Port = clusterName, "127.0.0.1", -1
	o.Cluster.TLSConfig = tc
	o.Routes = server.RoutesFromStr(routeURL)
	s, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	l := &srvLog{}
	s.SetLoggerV2(l, true, false, false)
	s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("attacker server not ready")
	}
	return s, l
}

// srvLog keeps a nats-server's error and warning lines.
type srvLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *srvLog) add(format string, v []any) {
	l.mu.Lock()
	l.lines = append(l.lines, fmt.Sprintf(format, v...))
	l.mu.Unlock()
}
func (l *srvLog) Noticef(f string, v ...any) { l.add(f, v) }
func (l *srvLog) Warnf(f string, v ...any)   { l.add(f, v) }
func (l *srvLog) Fatalf(f string, v ...any)  { l.add(f, v) }
func (l *srvLog) Errorf(f string, v ...any)  { l.add(f, v) }
func (l *srvLog) Debugf(f string, v ...any)  { l.add(f, v) }
func (l *srvLog) Tracef(string, ...any)      {}
func (l *srvLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

func (l *srvLog) count(sub string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.lines {
		if strings.Contains(s, sub) {
			n++
		}
	}
	return n
}

// TestRouteRequiresMeshCert: the route port of a TLS peer takes only a
// server with a certificate of the mesh's CA; a stock server without one,
// or with one of another CA, is refused however it declares itself. A
// member with a certificate of the CA does form the cluster.
func TestRouteRequiresMeshCert(t *testing.T) {
	k := newTestPKI(t)
	cfg := tlsConfig(t, "c1", k)
	cfg.Role, cfg.Site = RoleCentral, ""
	c2Route := freeAddr(t)
	cfg.Cluster.Listen, cfg.Cluster.Routes = freeAddr(t), []string{"nats-route://" + c2Route}
	p := startPeer(t, cfg)
	routeURL := "nats-route://" + cfg.Cluster.Listen
	// A TLS route port sends its INFO line (with the cluster's name) only
	// after the TLS handshake, which asks for a certificate of the CA; the
	// attacker takes the name from an insecure peer's INFO, or guesses the
	// default.
	routePortSilent(t, cfg.Cluster.Listen)
	cluster := cfg.ClusterName()

	t.Run("no certificate", func(t *testing.T) {
		tc := &tls.Config{InsecureSkipVerify: true} // it does not care who central is
		a, l := attacker(t, cluster, routeURL, tc)
		waitRouteRefused(t, l)
		if n := a.NumRoutes(); n != 0 {
			t.Fatalf("the attacker has %d routes", n)
		}
		if n := p.Server().NumRoutes(); n != 0 {
			t.Fatalf("the peer has %d routes", n)
		}
	})
	t.Run("plaintext", func(t *testing.T) {
		a, l := attacker(t, cluster, routeURL, nil)
		waitRouteRefused(t, l)
		if a.NumRoutes() != 0 || p.Server().NumRoutes() != 0 {
			t.Fatalf("routes: attacker %d, peer %d", a.NumRoutes(), p.Server().NumRoutes())
		}
	})
	t.Run("another CA", func(t *testing.T) {
		other := newTestPKI(t)
		files := other.issue("intruder")
		cert, err := tls.LoadX509KeyPair(files.Cert, files.Key)
		if err != nil {
			t.Fatal(err)
		}
		tc := &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true}
		a, l := attacker(t, cluster, routeURL, tc)
		waitRouteRefused(t, l)
		if a.NumRoutes() != 0 || p.Server().NumRoutes() != 0 {
			t.Fatalf("routes: attacker %d, peer %d", a.NumRoutes(), p.Server().NumRoutes())
		}
	})
	t.Run("member", func(t *testing.T) {
		m := tlsConfig(t, "c2", k)
		m.Role, m.Site = RoleCentral, ""
		m.Cluster.Listen, m.Cluster.Routes = c2Route, []string{routeURL}
		mp := startPeer(t, m)
		// Every route between the two, not the first: the server dials a
		// pool of routes and one for the system account, and one still
		// dialling when the routes are listed shows as new after the
		// reload ("routes after the reload 20,22,23,21, before 21").
		want := server.DEFAULT_ROUTE_POOL_SIZE + 1
		eventually.NoError(t, 15*time.Second, "the routes", func() error {
			if a, b := mp.Server().NumRoutes(), p.Server().NumRoutes(); a != want || b != want {
				return fmt.Errorf("routes %d and %d, want %d each", a, b, want)
			}
			return nil
		})
		// A new certificate for the member dialled: the routes stay.
		before := routeIDs(t, p)
		k.issueTo("c1", cfg.TLS)
		if err := p.ReloadTLS(); err != nil {
			t.Fatal(err)
		}
		if after := routeIDs(t, p); after != before {
			t.Fatalf("routes after the reload %s, before %s", after, before)
		}
	})
}

// routePortSilent checks that a plaintext dialler of a route port reads
// nothing in the first second: no INFO line, so not the cluster's name.
func routePortSilent(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if line, err := bufio.NewReader(c).ReadString('\n'); err == nil || line != "" {
		t.Fatalf("the route port sent %q in plaintext", line)
	}
}

// waitRouteRefused waits until the attacker's route was closed twice (the
// peer drops it and the attacker dials again), or its TLS handshake failed
// twice.
func waitRouteRefused(t *testing.T, l *srvLog) {
	t.Helper()
	eventually.NoError(t, 20*time.Second, "the attacker's route to be refused", func() error {
		if n := l.count("connection closed") + l.count("TLS route handshake error"); n < 2 {
			return fmt.Errorf("the attacker's route was refused %d times", n)
		}
		return nil
	})
}

// TestLeafVerifiesCentral: a site links to a TLS central only when its
// join token pins central's CA; a token pinning another CA does not link.
func TestLeafVerifiesCentral(t *testing.T) {
	k := newTestPKI(t)
	ccfg := tlsConfig(t, "c1", k)
	ccfg.Role, ccfg.Site = RoleCentral, ""
	ccfg.LeafListen, ccfg.LeafPassword = freeAddr(t), "central-leaf-secret"
	central := startPeer(t, ccfg)
	join := bus.JoinInfo{Central: []string{central.LeafURL()}, User: ccfg.LeafUser, Password: ccfg.LeafPassword}
	if err := plaintextConnect(ccfg.LeafListen); err == nil {
		t.Fatal("the leaf listener answered a plaintext CONNECT")
	}

	// A site that pins another CA: central's certificate does not verify.
	other := newTestPKI(t)
	ob, err := os.ReadFile(other.caFile())
	if err != nil {
		t.Fatal(err)
	}
	bad := siteConfig(t, "lyon", join)
	bad.Insecure, bad.CentralCA = false, string(ob)
	bad.TLS = other.issue("lyon")
	w := &logWatch{}
	lyon := startPeerLog(t, bad, w)
	eventually.NoError(t, 15*time.Second, "the site pinning another CA to be refused", func() error { return w.has("certificate signed by unknown authority") })
	if n := lyon.Server().NumLeafNodes(); n != 0 {
		t.Fatalf("the site pinning another CA has %d leaf links", n)
	}

	// The CA central published for its join tokens: the site links.
	cb, err := os.ReadFile(k.caFile())
	if err != nil {
		t.Fatal(err)
	}
	good := siteConfig(t, "paris", join)
	good.CentralCA = string(cb) // an insecure site still verifies a central its token pins
	paris := startPeer(t, good)
	eventually.NoError(t, 15*time.Second, "paris's leaf link", func() error {
		if paris.Server().NumLeafNodes() == 0 {
			return errors.New("paris not linked")
		}
		return nil
	})
	if lyon.Server().NumLeafNodes() != 0 {
		t.Fatal("lyon linked")
	}
}

// TestTLSRotation: new certificate files, reloaded, serve new connections
// while the connections up stay up: a client and a site's leaf link.
func TestTLSRotation(t *testing.T) {
	k := newTestPKI(t)
	ccfg := tlsConfig(t, "c1", k)
	ccfg.Role, ccfg.Site = RoleCentral, ""
	ccfg.LeafListen, ccfg.LeafPassword = freeAddr(t), "central-leaf-secret"
	central := startPeer(t, ccfg)
	cb, err := os.ReadFile(k.caFile())
	if err != nil {
		t.Fatal(err)
	}
	site := siteConfig(t, "paris", bus.JoinInfo{Central: []string{central.LeafURL()}, User: ccfg.LeafUser, Password: ccfg.LeafPassword, CA: string(cb)})
	paris := startPeer(t, site)
	eventually.NoError(t, 15*time.Second, "paris's leaf link", func() error {
		if paris.Server().NumLeafNodes() == 0 {
			return errors.New("paris not linked")
		}
		return nil
	})
	ctx := testCtx(t)
	ccc := bus.ConnConfig{URL: central.ClientURL(), CAFile: k.caFile()}
	before, err := bus.ConnectWait(ctx, ccc)
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	oldSerial := servedSerial(t, before)
	var reconnects int
	var mu sync.Mutex
	before.SetReconnectHandler(func(*nats.Conn) { mu.Lock(); reconnects++; mu.Unlock() })
	leafBefore := leafConnID(t, central)

	fresh := k.issueTo("c1", ccfg.TLS)
	if err := central.ReloadTLS(); err != nil {
		t.Fatal(err)
	}
	after, err := bus.ConnectWait(ctx, ccc)
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()
	if got := servedSerial(t, after); got == oldSerial || got != fresh.SerialNumber.String() {
		t.Fatalf("a new connection got serial %s; old %s, new %s", got, oldSerial, fresh.SerialNumber)
	}
	if _, err := before.Request("$JS.API.INFO", nil, 2*time.Second); err != nil {
		t.Fatalf("the connection made before the rotation: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if reconnects != 0 || !before.IsConnected() {
		t.Fatalf("the client made before reconnected %d times (connected %v)", reconnects, before.IsConnected())
	}
	if got := leafConnID(t, central); got != leafBefore {
		t.Fatalf("the leaf link was remade: connection %d, was %d", got, leafBefore)
	}
	// A bad pair is refused and the current certificate stays.
	if err := os.WriteFile(ccfg.TLS.Cert, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := central.ReloadTLS(); err == nil {
		t.Fatal("a garbage certificate was taken")
	}
	again, err := bus.ConnectWait(ctx, ccc)
	if err != nil {
		t.Fatalf("after a failed reload: %v", err)
	}
	again.Close()
}

// TestTLSWatch: new certificate files are taken without a SIGHUP when the
// peer watches them.
func TestTLSWatch(t *testing.T) {
	k := newTestPKI(t)
	cfg := tlsConfig(t, "watch", k)
	cfg.TLS.Watch = 50 * time.Millisecond
	p := startPeer(t, cfg)
	fresh := k.issueTo("watch", cfg.TLS)
	waitServed(t, p, k, fresh)
}

// waitServed waits until a new client of p gets the certificate fresh.
func waitServed(t *testing.T, p *Peer, k *testPKI, fresh *x509.Certificate) {
	t.Helper()
	ctx := testCtx(t)
	ccc := bus.ConnConfig{URL: p.ClientURL(), CAFile: k.caFile()}
	eventually.NoError(t, 10*time.Second, "the fresh certificate to be served", func() error {
		nc, err := bus.ConnectWait(ctx, ccc)
		if err != nil {
			return err
		}
		defer nc.Close()
		if got := servedSerial(t, nc); got != fresh.SerialNumber.String() {
			return fmt.Errorf("served serial %s, want %s", got, fresh.SerialNumber)
		}
		return nil
	})
}

// routeIDs lists the connection ids of p's routes, in order.
func routeIDs(t *testing.T, p *Peer) string {
	t.Helper()
	rz, err := p.Server().Routez(nil)
	if err != nil {
		t.Fatal(err)
	}
	rids := make([]uint64, 0, len(rz.Routes))
	for _, r := range rz.Routes {
		rids = append(rids, r.Rid)
	}
	slices.Sort(rids)
	ids := make([]string, len(rids))
	for i, r := range rids {
		ids[i] = strconv.FormatUint(r, 10)
	}
	return strings.Join(ids, ",")
}

func servedSerial(t *testing.T, nc *nats.Conn) string {
	t.Helper()
	st, err := nc.TLSConnectionState()
	if err != nil || len(st.PeerCertificates) == 0 {
		t.Fatalf("tls state: %v", err)
	}
	return st.PeerCertificates[0].SerialNumber.String()
}

func leafConnID(t *testing.T, p *Peer) uint64 {
	t.Helper()
	lz, err := p.Server().Leafz(nil)
	if err != nil || len(lz.Leafs) != 1 {
		t.Fatalf("leafz: %v (%d links)", err, len(lz.Leafs))
	}
	return lz.Leafs[0].ID
}

// TestMonitorHTTPS: the monitor speaks HTTPS only, asks for the password,
// and is on loopback when the address names no host.
func TestMonitorHTTPS(t *testing.T) {
	k := newTestPKI(t)
	cfg := tlsConfig(t, "mon", k)
	_, port, _ := net.SplitHostPort(freeAddr(t))
	cfg.HTTPListen, cfg.HTTPUser, cfg.HTTPPassword = ":"+port, "monitor", "monitor-secret"
	p := startPeer(t, cfg)
	addr := p.HTTPAddr()
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("monitor on %s, want loopback", addr)
	}
	if resp, err := http.Get("http://" + addr + "/varz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode < 300 {
			t.Fatalf("plaintext GET: %s", resp.Status)
		}
	}
	pool, err := pki.PoolFile(k.caFile())
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	var body []byte
	get := func(path, user, pw string) int {
		req, _ := http.NewRequest("GET", "https://"+addr+path, nil)
		if user != "" {
			req.SetBasicAuth(user, pw)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, _ = io.ReadAll(resp.Body)
		return resp.StatusCode
	}
	if c := get("/varz", "", ""); c != http.StatusUnauthorized {
		t.Fatalf("/varz without auth: %d", c)
	}
	if c := get("/accountz", "monitor", "wrong-password"); c != http.StatusUnauthorized {
		t.Fatalf("/accountz with a wrong password: %d", c)
	}
	if c := get("/varz", "monitor", "monitor-secret"); c != http.StatusOK {
		t.Fatalf("/varz with the password: %d", c)
	}
	if c := get("/healthz", "", ""); c != http.StatusOK {
		t.Fatalf("/healthz: %d", c)
	}
	// Its options only with the password: they say whether an account's
	// stream exists (a review asked for one that does not).
	const ask = "/healthz?details=true&account=default&stream=NOPE"
	if c := get(ask, "", ""); c != http.StatusOK || strings.Contains(string(body), "not found") {
		t.Fatalf("%s without auth: %d %s", ask, c, body)
	}
	if c := get(ask, "monitor", "monitor-secret"); c == http.StatusOK || !strings.Contains(string(body), "not found") {
		t.Fatalf("%s with the password: %d %s", ask, c, body)
	}
}

// TestClusterListenWithoutRoutes: nats-server's JetStream needs routes in
// a cluster, so a cluster listen address without routes is refused at once
// with an error that says what to do (it used to start and keep JetStream
// unavailable for good).
func TestClusterListenWithoutRoutes(t *testing.T) {
	cfg := centralConfig(t, "c1")
	cfg.Cluster.Listen = freeAddr(t)
	if _, err := New(cfg, nil); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "--routes") {
		t.Fatalf("got %v, want ErrInvalidConfig naming --routes", err)
	}
}

// TestPlainHealth: without the monitor's credentials /healthz says only
// its status: an unhealthy answer's error names an account and a stream.
func TestPlainHealth(t *testing.T) {
	for _, c := range []struct {
		code       int
		body, want string
	}{
		{http.StatusOK, `{"status":"ok"}`, `{"status":"ok"}`},
		{http.StatusServiceUnavailable, `{"status":"unavailable","status_code":503,"error":"JetStream stream 'ACYU5XHP > EVENTS' is not current"}`,
			`{"status":"unavailable","status_code":503}`},
		{http.StatusServiceUnavailable, `{"status":"unavailable","status_code":503,"errors":[{"type":"STREAM","account":"ACYU5XHP","stream":"EVENTS","error":"not current"}]}`,
			`{"status":"unavailable","status_code":503}`},
	} {
		h := func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(c.code)
			_, _ = w.Write([]byte(c.body))
		}
		rec := httptest.NewRecorder()
		plainHealth(h)(rec, httptest.NewRequest("GET", "/healthz", nil))
		if got := strings.TrimSpace(rec.Body.String()); rec.Code != c.code || got != c.want {
			t.Errorf("%d %s: got %d %s, want %d %s", c.code, c.body, rec.Code, got, c.code, c.want)
		}
	}
}
