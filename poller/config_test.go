package poller

import (
	"errors"
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
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error wrapping ErrInvalidConfig with %q", err, tt.want)
			}
		})
	}
}

// TestConfigValidateSentinel: every rule Validate checks is reported with
// an error wrapping ErrInvalidConfig, and so is an unknown ICMP mode.
func TestConfigValidateSentinel(t *testing.T) {
	base := DefaultConfig()
	base.Name, base.Site = "p1", "hq"
	for name, edit := range map[string]func(*Config){
		"name":            func(c *Config) { c.Name = "P 1" },
		"site":            func(c *Config) { c.Site = "" },
		"workers":         func(c *Config) { c.Workers = 0 },
		"icmp count":      func(c *Config) { c.ICMPCount = 101 },
		"icmp interval":   func(c *Config) { c.ICMPInterval = 0 },
		"damping":         func(c *Config) { c.Damping.DownAfter = 0 },
		"flap":            func(c *Config) { c.Damping.FlapWindow = -1 },
		"batch size":      func(c *Config) { c.BatchSize = 0 },
		"publish timeout": func(c *Config) { c.PublishTimeout = time.Millisecond },
		"trap queue":      func(c *Config) { c.TrapQueue = 0 },
		"trap queue max":  func(c *Config) { c.TrapQueue = MaxTrapQueue + 1 },
		"clock":           func(c *Config) { c.Now = nil },
		"trap users":      func(c *Config) { c.TrapUsers.Users = []TrapUser{{}} },
		"trap listen":     func(c *Config) { c.TrapListen = "nowhere" },
	} {
		c := base
		edit(&c)
		if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: Validate() = %v, want an error wrapping ErrInvalidConfig", name, err)
		}
	}
	if _, err := ParseICMPMode("raw"); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("ParseICMPMode(raw) = %v, want an error wrapping ErrInvalidConfig", err)
	}
}
