package poller

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// needRoot skips a test that needs root, except under CI=true, where it
// fails.
func needRoot(t *testing.T, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s needs root, and CI=true requires it to run", why)
		}
		t.Skipf("%s needs root; skipping", why)
	}
}

func checkPingOK(t *testing.T, r ICMPResult, count int) {
	t.Helper()
	if !r.OK {
		t.Fatalf("ping failed: reason %q, err %v", r.Reason, r.Err)
	}
	if r.Sent != count || r.Received != count || r.Loss != 0 {
		t.Errorf("sent/received/loss = %d/%d/%v, want %d/%d/0", r.Sent, r.Received, r.Loss, count, count)
	}
	if r.RTTMin <= 0 || r.RTTMin > r.RTTAvg || r.RTTAvg > r.RTTMax {
		t.Errorf("rtt min/avg/max = %s/%s/%s, want 0 < min <= avg <= max", r.RTTMin, r.RTTAvg, r.RTTMax)
	}
}

func TestICMPLoopback(t *testing.T) {
	p := NewICMPProber(ICMPAuto, 3, 10*time.Millisecond)
	for _, addr := range []string{"127.0.0.1", "127.31.7.9", "localhost"} {
		t.Run(addr, func(t *testing.T) {
			checkPingOK(t, p.Ping(context.Background(), addr, 2*time.Second), 3)
		})
	}
}

// TestICMPConcurrent pings from many goroutines through one fresh prober,
// so the socket detection runs concurrently (run with -race).
func TestICMPConcurrent(t *testing.T) {
	p := NewICMPProber(ICMPAuto, 2, 10*time.Millisecond)
	var wg sync.WaitGroup
	results := make([]ICMPResult, 20)
	for i := range results {
		wg.Go(func() {
			results[i] = p.Ping(context.Background(), fmt.Sprintf("127.0.%d.%d", i, i+1), 2*time.Second)
		})
	}
	wg.Wait()
	for i, r := range results {
		if !r.OK || r.Received != 2 {
			t.Errorf("ping %d: OK %v received %d reason %q err %v", i, r.OK, r.Received, r.Reason, r.Err)
		}
	}
}

// pingGroupAllows reports whether net.ipv4.ping_group_range admits our
// group, that is whether unprivileged ICMP sockets work here.
func pingGroupAllows(t *testing.T) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/net/ipv4/ping_group_range")
	if err != nil {
		t.Skipf("cannot read ping_group_range: %v", err)
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		t.Fatalf("ping_group_range %q", b)
	}
	lo, _ := strconv.Atoi(f[0])
	hi, _ := strconv.Atoi(f[1])
	groups, _ := os.Getgroups()
	for _, g := range append(groups, os.Getegid()) {
		if g >= lo && g <= hi {
			return true
		}
	}
	return false
}

func TestICMPModes(t *testing.T) {
	t.Run("unprivileged", func(t *testing.T) {
		r := NewICMPProber(ICMPUnprivileged, 1, 10*time.Millisecond).Ping(context.Background(), "127.0.0.1", 2*time.Second)
		if pingGroupAllows(t) {
			checkPingOK(t, r, 1)
			return
		}
		if r.OK || !errors.Is(r.Err, ErrICMPNotPermitted) || r.Reason != ReasonICMPNotPermitted {
			t.Fatalf("unprivileged ping outside ping_group_range: OK %v reason %q err %v", r.OK, r.Reason, r.Err)
		}
		if !errors.Is(r.Err, os.ErrPermission) {
			t.Errorf("Err %v does not carry the permission error", r.Err)
		}
	})
	t.Run("privileged", func(t *testing.T) {
		needRoot(t, "a raw ICMP socket")
		r := NewICMPProber(ICMPPrivileged, 2, 10*time.Millisecond).Ping(context.Background(), "127.0.0.1", 2*time.Second)
		checkPingOK(t, r, 2)
	})
	t.Run("auto decides once", func(t *testing.T) {
		p := NewICMPProber(ICMPAuto, 1, 10*time.Millisecond)
		checkPingOK(t, p.Ping(context.Background(), "127.0.0.1", 2*time.Second), 1)
		priv, err := p.socketKind()
		if err != nil {
			t.Fatal(err)
		}
		if want := !pingGroupAllows(t); priv != want {
			t.Errorf("auto chose privileged=%v, want %v (ping_group_range)", priv, want)
		}
	})
}

// dropPings makes echo requests to one 127/8 address vanish with an
// iptables rule that t.Cleanup removes. It needs root and iptables.
func dropPings(t *testing.T) string {
	t.Helper()
	needRoot(t, "dropping pings with iptables")
	bin := needTool(t, "iptables")
	addr := fmt.Sprintf("127.%d.%d.%d", 100+rand.IntN(100), rand.IntN(256), 1+rand.IntN(254))
	// INPUT, not OUTPUT: a locally sent packet dropped in OUTPUT fails its
	// sendmsg with EPERM instead of vanishing.
	rule := []string{"INPUT", "-d", addr + "/32", "-p", "icmp", "--icmp-type", "echo-request", "-j", "DROP"}
	if out, err := exec.Command(bin, append([]string{"-w", "-I"}, rule...)...).CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("iptables -I %v: %v\n%s", rule, err, out)
		}
		t.Skipf("iptables does not work here: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(bin, append([]string{"-w", "-D"}, rule...)...).CombinedOutput(); err != nil {
			t.Errorf("remove iptables rule %v: %v\n%s", rule, err, out)
		}
	})
	return addr
}

func TestICMPDown(t *testing.T) {
	addr := dropPings(t)
	p := NewICMPProber(ICMPAuto, 2, 10*time.Millisecond)
	r := p.Ping(context.Background(), addr, 300*time.Millisecond)
	if r.OK || r.Reason != "timeout" || !errors.Is(r.Err, ErrICMPTimeout) {
		t.Fatalf("ping of a dropped address: OK %v reason %q err %v", r.OK, r.Reason, r.Err)
	}
	if r.Sent != 2 || r.Received != 0 || r.Loss != 1 {
		t.Errorf("sent/received/loss = %d/%d/%v, want 2/0/1", r.Sent, r.Received, r.Loss)
	}
}

func TestICMPCancel(t *testing.T) {
	addr := dropPings(t)
	p := NewICMPProber(ICMPAuto, 1, 10*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := p.Ping(ctx, addr, time.Minute)
	if r.OK || r.Reason != "cancelled" || !errors.Is(r.Err, ErrICMPCancelled) {
		t.Fatalf("ping with cancelled context: OK %v reason %q err %v", r.OK, r.Reason, r.Err)
	}

	// Cancelled while waiting: the ping ends long before its timeout.
	ctx, cancel = context.WithCancel(context.Background())
	res := make(chan ICMPResult, 1)
	go func() { res <- p.Ping(ctx, addr, time.Minute) }()
	cancel()
	select {
	case r = <-res:
	case <-time.After(20 * time.Second):
		t.Fatal("ping did not end within 20s of cancel (timeout 1m)")
	}
	if r.OK || r.Reason != "cancelled" || !errors.Is(r.Err, context.Canceled) {
		t.Fatalf("cancelled ping: OK %v reason %q err %v", r.OK, r.Reason, r.Err)
	}
}
