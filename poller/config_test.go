package poller

import (
	"strings"
	"testing"
	"time"
)

// TestConfigValidateGroup: the poller group's timings are checked, and the
// error names the field and the rule.
func TestConfigValidateGroup(t *testing.T) {
	base := DefaultConfig()
	base.Name, base.Site = "p1", "hq"
	if err := base.Validate(); err != nil {
		t.Fatalf("default: %v", err)
	}
	tests := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"heartbeat too short", func(c *Config) { c.HeartbeatEvery = 10 * time.Millisecond }, "heartbeat 10ms is too short"},
		{"lease not whole seconds", func(c *Config) { c.GroupLease = 1500 * time.Millisecond }, "group lease 1.5s: use whole seconds"},
		{"lease too short", func(c *Config) { c.GroupLease = 0 }, "group lease 0s"},
		{"member timeout under two heartbeats", func(c *Config) { c.HeartbeatEvery, c.MemberTimeout = time.Second, time.Second },
			"member timeout 1s must be at least two heartbeats (2s)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base
			tt.edit(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error with %q", err, tt.want)
			}
		})
	}
}
