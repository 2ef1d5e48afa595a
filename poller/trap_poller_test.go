package poller_test

import (
	"context"
	"testing"
	"time"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/poller"
	"github.com/meshmon/meshmon/sim"
)

// TestPollerSimV3Trap: a simulated device's SNMPv3 trap becomes an event of
// that device, with its user.
func TestPollerSimV3Trap(t *testing.T) {
	e := newEnvChecks(t, 1, "127.88.0.1", meshmon.CheckICMP)
	su := sim.DefaultConfig().Users[0]
	p, _ := e.runPoller(func(c *poller.Config) {
		c.TrapListen = "127.0.0.1:0"
		c.TrapUsers = poller.TrapUsers{Users: []poller.TrapUser{{Name: su.Name,
			AuthProtocol: su.AuthProtocol, AuthPassword: su.AuthPassword, PrivProtocol: su.PrivProtocol, PrivPassword: su.PrivPassword}}}
	})
	a := e.sim.Agents()[0]
	eventually.True(t, 10*time.Second, "the poller to know the device", func() bool { return p.Stats().Devices == 1 })
	if err := a.SendLinkTrap(context.Background(), p.TrapAddr().String(), meshmon.SNMPv3, 2); err != nil {
		t.Fatal(err)
	}
	evs := e.waitKinds(a.Name(), meshmon.KindTrap)
	if tr := evs[0].Data.Trap; tr.Version != meshmon.SNMPv3 || tr.User != su.Name || tr.OID != "1.3.6.1.6.3.1.1.5.4" || tr.Labels["if_index"] != "2" {
		t.Errorf("v3 trap event: %+v", tr)
	}
}
