package poller_test

import (
	"net"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/poller"
)

// heldClock is a poller clock that, while held, stops the goroutine that
// commits traps to the spool (it reads the clock before each commit) and
// no other: the receiver keeps queueing, so a burst sits in the trap
// queue whole, as it does when spool writes stall on a loaded disk.
type heldClock struct {
	mu      sync.Mutex
	held    bool
	release chan struct{}
}

func newHeldClock() *heldClock { return &heldClock{held: true, release: make(chan struct{})} }

func (c *heldClock) now() time.Time {
	c.mu.Lock()
	held, release := c.held, c.release
	c.mu.Unlock()
	if held && strings.Contains(string(debug.Stack()), "poller.(*Poller).commitTraps") {
		<-release
	}
	return time.Now()
}

func (c *heldClock) free() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.held {
		c.held = false
		close(c.release)
	}
}

// sendTrapBurst sends n v2c traps (uptimes 1..n, so n distinct events) to
// the poller's trap port over loopback UDP. It keeps at most 1,000 in the
// kernel's socket buffer (sent but not yet read by the listener), so that
// what the poller loses is its own doing, not the kernel's.
func sendTrapBurst(t *testing.T, p *poller.Poller, n int) {
	t.Helper()
	c, err := net.DialUDP("udp", nil, p.TrapAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 1; i <= n; i++ {
		pkt, err := (&gosnmp.SnmpPacket{Version: gosnmp.Version2c, Community: "public", PDUType: gosnmp.SNMPv2Trap,
			RequestID: uint32(i), Variables: stormVars(uint32(i))}).MarshalMsg()
		if err != nil {
			t.Fatal(err)
		}
		if uint64(i)-p.Stats().TrapsIn > 1000 {
			eventually.True(t, 10*time.Second, "the listener to read the traps sent", func() bool {
				return uint64(i)-p.Stats().TrapsIn <= 500
			})
		}
		if _, err := c.Write(pkt); err != nil {
			t.Fatal(err)
		}
	}
	eventually.True(t, 10*time.Second, "the listener to read every trap sent", func() bool {
		return p.Stats().TrapsIn == uint64(n)
	})
}

// TestTrapQueueBurst: a burst of traps larger than the default trap queue,
// arriving while spool writes are stalled, is dropped in part with the
// default queue and kept whole with a queue sized for it (--trap-queue).
func TestTrapQueueBurst(t *testing.T) {
	const burst = 3 * 4096
	if def := poller.DefaultConfig().TrapQueue; def >= burst {
		t.Fatalf("the default trap queue is %d; the burst of %d must exceed it", def, burst)
	}
	run := func(t *testing.T, queue int) (*env, *poller.Poller, *heldClock) {
		e := newEnvChecks(t, 1, "127.87.0.1", meshmon.CheckICMP)
		clock := newHeldClock()
		p, _ := e.runPoller(func(c *poller.Config) {
			c.TrapListen = "127.0.0.1:0"
			c.TrapQueue = queue
			c.Now = clock.now
		})
		// Registered after the poller's stop, so it runs before it: a
		// failing test must not leave the poller's committer held.
		t.Cleanup(clock.free)
		sendTrapBurst(t, p, burst)
		return e, p, clock
	}
	t.Run("default", func(t *testing.T) {
		e, p, clock := run(t, poller.DefaultConfig().TrapQueue)
		st := p.Stats()
		// What the committer took out of the queue before it stalled is at
		// most one batch.
		if st.TrapsDropped < burst-uint64(poller.DefaultConfig().TrapQueue)-256-1 {
			t.Fatalf("default queue: %d of %d traps dropped, want at least %d", st.TrapsDropped, burst, burst-poller.DefaultConfig().TrapQueue-257)
		}
		clock.free()
		kept := burst - int(st.TrapsDropped)
		eventually.True(t, 30*time.Second, "the traps queued to be stored", func() bool {
			return len(e.events("ev.lab.*.trap")) == kept
		})
		t.Logf("default queue (%d): %d of %d traps dropped, %d stored", poller.DefaultConfig().TrapQueue, st.TrapsDropped, burst, kept)
	})
	t.Run("sized", func(t *testing.T) {
		e, p, clock := run(t, burst)
		if st := p.Stats(); st.TrapsDropped != 0 {
			t.Fatalf("trap queue of %d: %d of %d traps dropped", burst, st.TrapsDropped, burst)
		}
		clock.free()
		eventually.True(t, 30*time.Second, "every trap of the burst to be stored", func() bool {
			return len(e.events("ev.lab.*.trap")) == burst
		})
		seen := map[uint32]bool{}
		for _, ev := range e.events("ev.lab.*.trap") {
			if ev.Data.Trap == nil || seen[ev.Data.Trap.Uptime] {
				t.Fatalf("event %+v: not a trap, or a trap stored twice", ev.Data)
			}
			seen[ev.Data.Trap.Uptime] = true
		}
		if st := p.Stats(); st.TrapsDropped != 0 || st.TrapsCommitted != burst {
			t.Fatalf("stats after the burst: %d dropped, %d committed; want 0 and %d", st.TrapsDropped, st.TrapsCommitted, burst)
		}
	})
}
