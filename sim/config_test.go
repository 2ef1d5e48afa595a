package sim

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/meshmon/meshmon"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		mutate func(*Config)
		want   string // part of the error; "" means valid
	}{
		{"default", func(*Config) {}, ""},
		{"10k agents", func(c *Config) { c.Agents = 10000 }, ""},
		{"no agents", func(c *Config) { c.Agents = 0 }, "agents 0 is out of range"},
		{"ipv6 base", func(c *Config) { c.BaseAddr = netip.MustParseAddr("::1") }, "must be an IPv4 address"},
		{"leaves loopback", func(c *Config) { c.BaseAddr = netip.MustParseAddr("127.255.255.1"); c.Agents = 1000 }, "has room for only"},
		{"port", func(c *Config) { c.Port = 70000 }, "port 70000 is out of range"},
		{"prefix", func(c *Config) { c.NamePrefix = "Sim" }, "name prefix"},
		{"long prefix", func(c *Config) { c.NamePrefix = strings.Repeat("a", 60) }, "too long"},
		{"version", func(c *Config) { c.Versions = []string{"4"} }, `version "4" is unknown`},
		{"no community", func(c *Config) { c.Community = "" }, "community is empty"},
		{"v3 only needs no community", func(c *Config) { c.Community = ""; c.Versions = []string{meshmon.SNMPv3} }, ""},
		{"no users", func(c *Config) { c.Users = nil }, "users is empty"},
		{"short password", func(c *Config) { c.Users[0].AuthPassword = "short" }, "at least 8"},
		{"bad auth", func(c *Config) { c.Users[0].AuthProtocol = "SHA3" }, `auth protocol "SHA3" is unknown`},
		{"priv without auth", func(c *Config) { c.Users[0].AuthProtocol = ""; c.Users[0].AuthPassword = "" }, "auth protocol is empty"},
		{"duplicate user", func(c *Config) { c.Users = append(c.Users, c.Users[0]) }, "appears twice"},
		{"interfaces", func(c *Config) { c.Interfaces = 0 }, "interfaces 0 is out of range"},
		{"trap version", func(c *Config) { c.TrapVersion = "4" }, `trap version "4"`},
		{"trap version 3 without v3", func(c *Config) { c.TrapVersion, c.Versions = "3", []string{"2c"} }, "trap version 3 needs"},
		{"trap target", func(c *Config) { c.TrapTarget = "localhost" }, "trap target"},
		{"down for", func(c *Config) { c.DownFor = -1 }, "must not be negative"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfig()
			c.mutate(&cfg)
			err := cfg.Validate()
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("error %v, want one containing %q", err, c.want)
			case c.want != "" && !errors.Is(err, ErrInvalidConfig):
				t.Fatalf("error %v does not wrap ErrInvalidConfig", err)
			}
		})
	}
}

func TestStartNamesAddressOnBindFailure(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, 3)
	cfg.BaseAddr = netip.MustParseAddr("192.0.2.1") // TEST-NET-1: not local
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Start(t.Context())
	if err == nil || !strings.Contains(err.Error(), "192.0.2.1:0") {
		t.Fatalf("Start: %v, want an error naming 192.0.2.1:0", err)
	}
	_ = s.Close()
}

func TestOIDOrder(t *testing.T) {
	t.Parallel()
	m := newMIB(12)
	for i := 1; i < len(m.leaves); i++ {
		if cmp := compare(m.leaves[i-1].oid, m.leaves[i].oid); cmp >= 0 {
			t.Fatalf("%s before %s", m.leaves[i-1].name, m.leaves[i].name)
		}
	}
	// ifDescr.10 sorts after ifDescr.9 (numeric, not text).
	l, ok := m.next(mustOID(OIDIfEntry+".2.9"), false)
	if !ok || l.name != OIDIfEntry+".2.10" {
		t.Fatalf("next of ifDescr.9 = %v", l)
	}
}

func compare(a, b []uint32) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	return len(a) - len(b)
}

// TestNewV3User: protocols upper-cased; what the security level leaves
// out is dropped.
func TestNewV3User(t *testing.T) {
	for _, tt := range []struct {
		in   [4]string // auth proto, auth pass, priv proto, priv pass
		want V3User
	}{
		{[4]string{"sha", "a", "aes", "p"}, V3User{"u", "SHA", "a", "AES", "p"}},
		{[4]string{"sha", "a", "", "p"}, V3User{"u", "SHA", "a", "", ""}},
		{[4]string{"", "a", "aes", "p"}, V3User{Name: "u"}},
	} {
		if got := NewV3User("u", tt.in[0], tt.in[1], tt.in[2], tt.in[3]); got != tt.want {
			t.Errorf("NewV3User(%q) = %+v; want %+v", tt.in, got, tt.want)
		}
	}
	if got := SplitVersions(" 1, ,2c,3 "); !slices.Equal(got, []string{"1", "2c", "3"}) {
		t.Errorf("SplitVersions = %q", got)
	}
}
