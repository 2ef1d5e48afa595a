package sim

import (
	"testing"
	"time"

	"github.com/meshmon/meshmon"
)

// TestAgentDevice: an agent as an inventory device is valid and points at
// the address and port the agent answers on.
func TestAgentDevice(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, 2)
	s := startSim(t, cfg)
	a := s.Agents()[1]
	d := a.Device(time.Minute, time.Second, cfg.Community)
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	ap := a.Addr()
	if d.Name != a.Name() || d.Address != ap.Addr().String() || d.SNMP.Port != int(ap.Port()) || d.SNMP.Community != cfg.Community ||
		d.SNMP.Version != meshmon.SNMPv2c || time.Duration(d.Interval) != time.Minute || time.Duration(d.Timeout) != time.Second {
		t.Fatalf("agent %s at %s as device: %+v %+v", a.Name(), ap, d, *d.SNMP)
	}
	g := client(t, a)
	if _, err := g.Get([]string{".1.3.6.1.2.1.1.5.0"}); err != nil {
		t.Fatalf("the agent does not answer where its device points: %v", err)
	}
}
