package sim

import (
	"errors"
	"strings"
	"testing"
)

func TestTopologyConfig(t *testing.T) {
	tests := []struct {
		topology   string
		agents     int
		interfaces int
		err        string
	}{
		{TopologyNone, 1, 1, ""},
		{TopologyRing, 3, 3, ""},
		{TopologyTree, 2, 3, ""},
		{TopologyRing, 2, 3, "topology ring needs at least 3 agents"},
		{TopologyTree, 1, 3, "topology tree needs at least 2 agents"},
		{TopologyTree, 5, 2, "needs at least 3 interfaces"},
		{"mesh", 5, 4, `topology "mesh" is unknown`},
	}
	for _, tt := range tests {
		cfg := DefaultConfig()
		cfg.Topology, cfg.Agents, cfg.Interfaces = tt.topology, tt.agents, tt.interfaces
		err := cfg.Validate()
		if tt.err == "" {
			if err != nil {
				t.Errorf("%s/%d/%d: %v", tt.topology, tt.agents, tt.interfaces, err)
			}
			continue
		}
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%s/%d/%d: %v, want %q", tt.topology, tt.agents, tt.interfaces, err, tt.err)
		}
	}
}

// TestLinks: a ring of n agents has n links and the uplink, a tree n-1 and
// the uplink, and no port carries two links.
func TestLinks(t *testing.T) {
	for _, tt := range []struct {
		topology string
		links    int
	}{{TopologyRing, 10 + 1}, {TopologyTree, 9 + 1}, {TopologyNone, 0}} {
		cfg := DefaultConfig()
		cfg.Topology = tt.topology
		s, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		links := s.Links()
		if len(links) != tt.links {
			t.Errorf("%q: %d links, want %d", tt.topology, len(links), tt.links)
		}
		used := map[LinkEnd]bool{}
		for _, l := range links {
			for _, e := range []LinkEnd{l.A, l.B} {
				if used[e] {
					t.Errorf("%q: port %v carries two links", tt.topology, e)
				}
				used[e] = true
			}
		}
	}
}
