package peer

import (
	"log/slog"
	"testing"
)

// TestRoleOf: each kind of peer resolves to its role, with streams of its
// own or none, and its supervisors (the disk watch, which every kind runs,
// is Start's; a central's are the source watch, the tenant workers and, in
// a cluster, the peer admin).
func TestRoleOf(t *testing.T) {
	tests := []struct {
		name       string
		edit       func(*Config)
		streams    bool // ensure and maintain set
		apply      bool
		background int
		ready      string
	}{
		{"single site", func(c *Config) {}, true, false, 0, "peer ready"},
		{"linked site", func(c *Config) { c.Central = []string{"nats-leaf://127.0.0.1:7422"} }, true, false, 1, "peer ready"},
		{"site cluster", func(c *Config) { c.Cluster.Listen = "127.0.0.1:6222" }, true, false, 0, "peer ready; its streams follow once the cluster has a JetStream quorum"},
		{"site in operator mode", func(c *Config) {
			c.Central, c.Tenants = []string{"nats-leaf://127.0.0.1:7422"}, []SiteTenant{{Name: "acme"}}
		}, true, true, 2, "peer ready in operator mode"},
		{"central", func(c *Config) { c.Role = RoleCentral }, true, false, 2, "peer ready"},
		{"central cluster", func(c *Config) { c.Role, c.Cluster.Listen = RoleCentral, "127.0.0.1:6222" }, true, false, 3,
			"peer ready; its streams follow once the cluster has a JetStream quorum"},
		{"central in operator mode", func(c *Config) {
			c.Role, c.Trust, c.Cluster.Listen = RoleCentral, "trust.json", "127.0.0.1:6222"
		}, false, true, 3, "peer ready in operator mode; tenants come through the resolver"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.edit(&cfg)
			p := &Peer{cfg: cfg, log: slog.New(slog.DiscardHandler)}
			r := p.roleOf()
			if r.accounts == nil || r.leaf == nil || r.readyLog == nil {
				t.Fatal("a role without accounts, leaf links or a ready line")
			}
			if got := r.ensure != nil; got != tt.streams || (r.maintain != nil) != tt.streams {
				t.Errorf("streams of its own: ensure %v, maintain %v; want %v", got, r.maintain != nil, tt.streams)
			}
			if got := r.apply != nil; got != tt.apply {
				t.Errorf("apply %v, want %v", got, tt.apply)
			}
			if len(r.background) != tt.background {
				t.Errorf("%d supervisors, want %d", len(r.background), tt.background)
			}
			if msg, _ := r.readyLog(); msg != tt.ready {
				t.Errorf("ready line %q, want %q", msg, tt.ready)
			}
		})
	}
}
