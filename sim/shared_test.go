//go:build linux

package sim

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/meshmon/meshmon/internal/eventually"
)

func sharedConfig(t testing.TB, agents int) Config {
	cfg := testConfig(t, agents)
	cfg.SharedSocket = true
	return cfg
}

// TestSharedSocketBeyondFileLimit starts 100,000 agents on one shared
// socket, more than the open-files hard limit lets one process bind
// sockets for, and polls a sample of them across the address range.
func TestSharedSocketBeyondFileLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 agents: skipped with -short")
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	n := 100000
	if lim.Max != ^uint64(0) && lim.Max >= uint64(n) {
		n = min(MaxSharedAgents, int(lim.Max)+1000)
	}
	start := time.Now()
	s := startSim(t, sharedConfig(t, n))
	t.Logf("started %d agents in %s (open-files hard limit %d)", n, time.Since(start), lim.Max)
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil && len(fds) >= n {
		t.Fatalf("%d open files for %d agents: not sharing a socket", len(fds), n)
	}
	agents := s.Agents()
	port := agents[0].Addr().Port()
	sample := []int{n - 1}
	for i := 0; i < n; i += 2999 {
		sample = append(sample, i)
	}
	for _, i := range sample {
		a := agents[i]
		if a.Addr().Port() != port {
			t.Fatalf("agent %s on port %d, the first on %d: want one shared port", a.Name(), a.Addr().Port(), port)
		}
		g := client(t, a)
		if v := get1(t, g, OIDSysName); string(v.Value.([]byte)) != a.Name() {
			t.Fatalf("agent at %s says it is %q, want %s", a.Addr(), v.Value, a.Name())
		}
		pdus, err := g.BulkWalkAll(OIDIfXTable)
		if err != nil || len(pdus) != 12 {
			t.Fatalf("agent %s: %d varbinds, %v", a.Name(), len(pdus), err)
		}
		_ = g.Conn.Close()
	}
	last := agents[n-1]
	g := client(t, last, v3("meshmon", "SHA", "meshmon-auth", "AES", "meshmon-priv"))
	if v := get1(t, g, OIDSysName); string(v.Value.([]byte)) != last.Name() {
		t.Fatalf("v3: agent at %s says it is %q", last.Addr(), v.Value)
	}
}

// TestSharedSocket checks that an agent behaves on the shared socket as on
// its own: answers from its own address, faults, v3, traps, delays.
func TestSharedSocket(t *testing.T) {
	t.Parallel()
	s := startSim(t, sharedConfig(t, 300)) // past one /24, so .255 and .0 are skipped
	agents := s.Agents()

	t.Run("each agent answers as itself from its address", func(t *testing.T) {
		for _, a := range agents {
			if !strings.HasPrefix(a.Addr().Addr().String(), "127.") || a.Addr().Port() == 0 {
				t.Fatalf("agent %s at %s", a.Name(), a.Addr())
			}
		}
		for _, i := range []int{0, 1, 253, 254, 299} {
			a := agents[i]
			// gosnmp connects its socket to the agent's address: an
			// answer from any other address would not reach it.
			for _, opt := range []clientOpt{version(gosnmp.Version1), version(gosnmp.Version2c),
				v3("meshmon", "SHA", "meshmon-auth", "AES", "meshmon-priv")} {
				g := client(t, a, opt)
				if v := get1(t, g, OIDSysName); string(v.Value.([]byte)) != a.Name() {
					t.Fatalf("agent at %s says it is %q, want %s", a.Addr(), v.Value, a.Name())
				}
			}
		}
	})

	t.Run("wrong community is ignored", func(t *testing.T) {
		g := client(t, agents[5], community("private"), timeout(200*time.Millisecond, 0))
		if _, err := g.Get([]string{OIDSysName}); !isTimeout(err) {
			t.Fatalf("get with a wrong community: %v, want a timeout", err)
		}
	})

	t.Run("down agent is silent, the others answer", func(t *testing.T) {
		a, b := agents[10], agents[11]
		a.Down(true)
		g := client(t, a, timeout(200*time.Millisecond, 0))
		if _, err := g.Get([]string{OIDSysName}); !isTimeout(err) {
			t.Fatalf("get from a down agent: %v, want a timeout", err)
		}
		get1(t, client(t, b), OIDSysName)
		a.Down(false)
		get1(t, client(t, a), OIDSysName)
	})

	t.Run("delay", func(t *testing.T) {
		a := agents[12]
		a.SetDelay(300 * time.Millisecond)
		defer a.SetDelay(0)
		g := client(t, a)
		t0 := time.Now()
		get1(t, g, OIDSysName)
		if el := time.Since(t0); el < 300*time.Millisecond {
			t.Fatalf("answer after %s, want at least the 300ms delay", el)
		}
		// Other agents on the socket are not held up meanwhile.
		get1(t, client(t, agents[13]), OIDSysName)
	})

	t.Run("v3 resynchronises after a reboot", func(t *testing.T) {
		a := agents[20]
		g := client(t, a, v3("meshmon", "SHA", "meshmon-auth", "AES", "meshmon-priv"))
		get1(t, g, OIDSysName)
		a.Reboot()
		eventually.NoError(t, 5*time.Second, "v3 get after the reboot", func() error {
			_, err := g.Get([]string{OIDSysName})
			return err
		})
	})

	t.Run("trap leaves from the agent's address and port", func(t *testing.T) {
		target, traps := trapListener(t)
		a := agents[30]
		if err := a.SendLinkTrap(context.Background(), target, "2c", 1); err != nil {
			t.Fatal(err)
		}
		select {
		case tr := <-traps:
			if got := tr.from.AddrPort(); got.Addr().Unmap() != a.Addr().Addr() || got.Port() != a.Addr().Port() {
				t.Fatalf("trap from %s, want %s", got, a.Addr())
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no trap")
		}
	})

	t.Run("no answer for an address of no agent", func(t *testing.T) {
		// The address after the last agent is on the shared socket's
		// port too (it is the wildcard's), but no agent has it.
		past := agents[len(agents)-1].Addr().Addr().Next()
		none := &Agent{sim: s, bindAddr: past, addr: netip.AddrPortFrom(past, agents[0].Addr().Port())}
		g := client(t, none, timeout(200*time.Millisecond, 0))
		if _, err := g.Get([]string{OIDSysName}); !isTimeout(err) {
			t.Fatalf("get from %s: %v, want a timeout", none.Addr(), err)
		}
	})

	t.Run("closed agent is silent, the others answer", func(t *testing.T) {
		a := agents[40]
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		g := client(t, a, timeout(200*time.Millisecond, 0))
		if _, err := g.Get([]string{OIDSysName}); !isTimeout(err) {
			t.Fatalf("get from a closed agent: %v, want a timeout", err)
		}
		get1(t, client(t, agents[41]), OIDSysName)
	})
}

// TestSharedSocketNotLocal: on a shared socket, as on its own, an agent
// address that is not local fails Start, naming it.
func TestSharedSocketNotLocal(t *testing.T) {
	t.Parallel()
	cfg := sharedConfig(t, 3)
	cfg.BaseAddr = netip.MustParseAddr("192.0.2.1") // TEST-NET-1: not local
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Start(t.Context()); err == nil || !strings.Contains(err.Error(), "192.0.2.1") {
		t.Fatalf("Start: %v, want an error naming 192.0.2.1", err)
	}
}

// TestSharedSocketPortTaken: the shared socket takes its port on every
// address, so a port another socket holds is refused with a hint.
func TestSharedSocketPortTaken(t *testing.T) {
	t.Parallel()
	other, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	cfg := sharedConfig(t, 3)
	cfg.Port = other.LocalAddr().(*net.UDPAddr).Port
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Start(t.Context()); err == nil || !strings.Contains(err.Error(), "another socket holds that port") {
		t.Fatalf("Start: %v, want the port refused with a hint", err)
	}
}
