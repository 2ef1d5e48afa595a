package sim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/meshmon/meshmon/internal/snmpv3"
)

// fakeClock is a settable clock for Config.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// testConfig is a small fleet on kernel-chosen ports. Each test gets its
// own base address so parallel tests never share one.
func testConfig(t testing.TB, agents int) Config {
	cfg := DefaultConfig()
	cfg.Agents = agents
	cfg.Port = 0
	cfg.BaseAddr = nextBase(agents)
	return cfg
}

var (
	baseMu   sync.Mutex
	baseNext = 0
)

func nextBase(n int) (base netip.Addr) {
	baseMu.Lock()
	defer baseMu.Unlock()
	// 127.80.0.0 upwards, a /16 per 60,000 agents at most; tests use far fewer.
	hi := 80 + baseNext/256
	base = netip.MustParseAddr(fmt.Sprintf("127.%d.%d.1", hi, baseNext%256))
	baseNext += (n+253)/254 + 1
	return base
}

func startSim(t testing.TB, cfg Config) *Sim {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

type clientOpt func(*gosnmp.GoSNMP)

func v3(user, authProto, authPass, privProto, privPass string) clientOpt {
	return func(g *gosnmp.GoSNMP) {
		g.Version = gosnmp.Version3
		g.SecurityModel = gosnmp.UserSecurityModel
		sp := &gosnmp.UsmSecurityParameters{UserName: user, AuthenticationProtocol: gosnmp.NoAuth, PrivacyProtocol: gosnmp.NoPriv}
		g.MsgFlags = gosnmp.NoAuthNoPriv
		if authProto != "" {
			sp.AuthenticationProtocol, _ = snmpv3.AuthProtocol(authProto)
			sp.AuthenticationPassphrase = authPass
			g.MsgFlags = gosnmp.AuthNoPriv
		}
		if privProto != "" {
			sp.PrivacyProtocol, _ = snmpv3.PrivProtocol(privProto)
			sp.PrivacyPassphrase = privPass
			g.MsgFlags = gosnmp.AuthPriv
		}
		g.SecurityParameters = sp
	}
}

func version(v gosnmp.SnmpVersion) clientOpt { return func(g *gosnmp.GoSNMP) { g.Version = v } }

func community(c string) clientOpt { return func(g *gosnmp.GoSNMP) { g.Community = c } }

func timeout(d time.Duration, retries int) clientOpt {
	return func(g *gosnmp.GoSNMP) { g.Timeout, g.Retries = d, retries }
}

// client is a real gosnmp manager connected to agent a (v2c "public"
// unless opts say otherwise).
func client(t testing.TB, a *Agent, opts ...clientOpt) *gosnmp.GoSNMP {
	t.Helper()
	g := &gosnmp.GoSNMP{
		Target:    a.Addr().Addr().String(),
		Port:      a.Addr().Port(),
		Transport: "udp",
		Community: "public",
		Version:   gosnmp.Version2c,
		Timeout:   2 * time.Second,
		Retries:   1,
		MaxOids:   gosnmp.MaxOids,
	}
	for _, o := range opts {
		o(g)
	}
	if err := g.Connect(); err != nil {
		t.Fatalf("connect to %s: %v", a.Addr(), err)
	}
	t.Cleanup(func() { _ = g.Conn.Close() })
	return g
}

func get1(t testing.TB, g *gosnmp.GoSNMP, oid string) gosnmp.SnmpPDU {
	t.Helper()
	res, err := g.Get([]string{oid})
	if err != nil {
		t.Fatalf("get %s: %v", oid, err)
	}
	if res.Error != gosnmp.NoError || len(res.Variables) != 1 {
		t.Fatalf("get %s: error %v index %d, %d varbinds", oid, res.Error, res.ErrorIndex, len(res.Variables))
	}
	return res.Variables[0]
}

func isTimeout(err error) bool {
	var ne net.Error
	return err != nil && (errors.As(err, &ne) && ne.Timeout() || strings.Contains(err.Error(), "timeout"))
}

func mustBase(t testing.TB, s string) netip.Addr {
	t.Helper()
	return netip.MustParseAddr(s)
}
