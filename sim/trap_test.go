package sim

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"
	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/internal/eventually"
)

type gotTrap struct {
	pkt  *gosnmp.SnmpPacket
	from *net.UDPAddr
}

// trapListener runs a gosnmp.TrapListener on a free loopback port. gosnmp
// cannot report the port of a listener bound to :0, so a free port is found
// first and re-bound; a lost race is retried.
func trapListener(t *testing.T) (addr string, traps <-chan gotTrap) {
	t.Helper()
	ch := make(chan gotTrap, 16)
	for try := 0; try < 5; try++ {
		probe, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr = probe.LocalAddr().String()
		_ = probe.Close()
		tl := gosnmp.NewTrapListener()
		tl.Params = &gosnmp.GoSNMP{Version: gosnmp.Version2c, Community: "public"}
		tl.OnNewTrap = func(p *gosnmp.SnmpPacket, from *net.UDPAddr) {
			select {
			case ch <- gotTrap{p, from}:
			default: // never block the listener; tests read only the first few
			}
		}
		errc := make(chan error, 1)
		go func() { errc <- tl.Listen(addr) }()
		select {
		case <-tl.Listening():
			t.Cleanup(tl.Close)
			return addr, ch
		case err := <-errc:
			t.Logf("trap listener on %s: %v; retrying", addr, err)
		}
	}
	t.Fatal("no trap listener")
	return "", nil
}

func TestTraps(t *testing.T) {
	t.Parallel()
	target, traps := trapListener(t)
	s := startSim(t, testConfig(t, 3))
	a := s.Agents()[2]
	if err := a.SetIfOper(2, false); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	recv := func() gotTrap {
		t.Helper()
		select {
		case tr := <-traps:
			if got := tr.from.AddrPort(); got.Addr().Unmap() != a.Addr().Addr() || got.Port() != a.Addr().Port() {
				t.Errorf("trap from %s, want the agent's address %s", got, a.Addr())
			}
			return tr
		case <-time.After(5 * time.Second):
			t.Fatal("no trap within 5s")
		}
		return gotTrap{}
	}

	if err := a.SendTrap(ctx, target, meshmon.SNMPv2c); err != nil {
		t.Fatal(err)
	}
	tr := recv()
	v := tr.pkt.Variables
	if tr.pkt.PDUType != gosnmp.SNMPv2Trap || len(v) != 5 || v[0].Name != OIDSysUpTime || v[1].Name != OIDSnmpTrapOID ||
		v[1].Value != OIDLinkDown || v[2].Name != OIDIfEntry+".1.2" || v[2].Value != 2 {
		t.Errorf("v2c trap: %v %+v", tr.pkt.PDUType, v)
	}

	if err := a.SendLinkTrap(ctx, target, meshmon.SNMPv1, 1); err != nil {
		t.Fatal(err)
	}
	tr = recv()
	if tr.pkt.PDUType != gosnmp.Trap || tr.pkt.GenericTrap != 3 || tr.pkt.AgentAddress != a.Addr().Addr().String() || tr.pkt.Enterprise != SimSysObjectID {
		t.Errorf("v1 trap: generic %d agent %s enterprise %s", tr.pkt.GenericTrap, tr.pkt.AgentAddress, tr.pkt.Enterprise)
	}

	if err := a.SendTrap(ctx, target, "4"); !errors.Is(err, ErrBadTrapTarget) {
		t.Errorf("v4 trap: %v, want ErrBadTrapTarget", err)
	}
	if err := a.SendTrap(ctx, "nowhere", "2c"); !errors.Is(err, ErrBadTrapTarget) {
		t.Errorf("trap to a target without port: %v, want ErrBadTrapTarget", err)
	}
	a.Down(true)
	if err := a.SendTrap(ctx, target, "2c"); !errors.Is(err, ErrAgentDown) {
		t.Errorf("trap while down: %v, want ErrAgentDown", err)
	}
}

func TestRandomFault(t *testing.T) {
	t.Parallel()
	target, traps := trapListener(t)
	cfg := testConfig(t, 5)
	cfg.TrapTarget = target
	cfg.DownFor = 50 * time.Millisecond
	s := startSim(t, cfg)
	rng := rand.New(rand.NewPCG(1, 2))
	kinds := map[string]int{}
	for i := 0; i < 60; i++ {
		did, err := s.RandomFault(context.Background(), rng)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(did, "sim-0000") || strings.Contains(did, "\n") {
			t.Fatalf("description %q", did)
		}
		for _, k := range []string{"interface", "rebooted", "down for", "link trap"} {
			if strings.Contains(did, k) {
				kinds[k]++
			}
		}
	}
	if len(kinds) != 4 {
		t.Errorf("fault kinds seen: %v, want all 4", kinds)
	}
	eventually.True(t, 5*time.Second, "a trap from a fault", func() bool { return len(traps) > 0 })
	// Every outage ends by itself.
	eventually.True(t, 5*time.Second, "all agents up", func() bool {
		for _, a := range s.Agents() {
			if a.IsDown() {
				return false
			}
		}
		return true
	})
	_ = s.Close()
	if _, err := s.RandomFault(context.Background(), rng); !errors.Is(err, ErrClosed) {
		t.Errorf("RandomFault after Close: %v, want ErrClosed", err)
	}
}

// TestV3Trap: a v3 trap goes as the Sim's first user, authenticated and
// encrypted with its keys localized to the agent's engine ID, which the
// trap carries as its authoritative engine.
func TestV3Trap(t *testing.T) {
	t.Parallel()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	s := startSim(t, testConfig(t, 1))
	a := s.Agents()[0]
	if err := a.SetIfOper(3, false); err != nil {
		t.Fatal(err)
	}
	if err := a.SendTrap(context.Background(), pc.LocalAddr().String(), meshmon.SNMPv3); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65535)
	_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	u := DefaultConfig().Users[0]
	dec := &gosnmp.GoSNMP{Version: gosnmp.Version3, SecurityModel: gosnmp.UserSecurityModel, MsgFlags: gosnmp.AuthPriv,
		SecurityParameters: &gosnmp.UsmSecurityParameters{UserName: u.Name,
			AuthenticationProtocol: gosnmp.SHA, AuthenticationPassphrase: u.AuthPassword,
			PrivacyProtocol: gosnmp.AES, PrivacyPassphrase: u.PrivPassword}}
	pkt, err := dec.UnmarshalTrap(buf[:n], true)
	if err != nil {
		t.Fatalf("decode the v3 trap with the user's pass phrases: %v", err)
	}
	sp := pkt.SecurityParameters.(*gosnmp.UsmSecurityParameters)
	v := pkt.Variables
	if pkt.PDUType != gosnmp.SNMPv2Trap || pkt.MsgFlags&gosnmp.AuthPriv != gosnmp.AuthPriv || sp.AuthoritativeEngineID != a.EngineID() ||
		len(v) != 5 || v[1].Value != OIDLinkDown || v[2].Value != 3 {
		t.Errorf("v3 trap: %v flags %v engine %x, %+v", pkt.PDUType, pkt.MsgFlags, sp.AuthoritativeEngineID, v)
	}
}
