//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/internal/eventually"
)

// TestICMPWithoutPermissionRaisesNoNodeDown runs a poller as an unprivileged
// user (nobody) in a network namespace whose net.ipv4.ping_group_range lets
// nobody open ICMP sockets. The poller must say so once and report its ICMP
// checks as unknown, never page anybody with node_down.
func TestICMPWithoutPermissionRaisesNoNodeDown(t *testing.T) {
	if os.Getuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("this test needs root (network namespaces), and CI=true requires it to run")
		}
		t.Skip("needs root: it makes a network namespace and runs the poller as nobody")
	}
	ipTool, setpriv := need(t, "ip"), need(t, "setpriv")
	natsBin := need(t, "nats")
	ns := fmt.Sprintf("mm-icmp-%d", os.Getpid())
	inNS := func(args ...string) []string { return append([]string{"netns", "exec", ns}, args...) }
	mustExec := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	mustExec(ipTool, "netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command(ipTool, "netns", "del", ns).Run() })
	mustExec(ipTool, "-n", ns, "link", "set", "lo", "up")
	mustExec(ipTool, inNS("sysctl", "-w", "net.ipv4.ping_group_range=1 0")...)

	// nobody must reach the binary and write its data dir.
	if err := os.Chmod(filepath.Dir(meshmonBin), 0o755); err != nil {
		t.Fatal(err)
	}
	pollDir, err := os.MkdirTemp("", "meshmon-e2e-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(pollDir) })
	if err := os.Chmod(pollDir, 0o777); err != nil {
		t.Fatal(err)
	}

	// A fresh namespace has nothing listening: its port 4222 is free.
	const url = "nats://127.0.0.1:4222"
	p := start(t, "peer", ipTool, inNS(meshmonBin, "peer", "run", "--site", "icmp", "--listen", "127.0.0.1:4222", "--data-dir", filepath.Join(t.TempDir(), "peer"))...)
	p.waitOutput(`peer \S+ ready on`, peerReady)
	cli := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(ipTool, inNS(append([]string{meshmonBin, "--server", url}, args...)...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("meshmon %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	cli("device", "add", "pinged", "--address", "127.0.0.1", "--checks", "icmp", "--interval", "1s")

	po := start(t, "poller", ipTool, inNS(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
		meshmonBin, "--server", url, "poller", "run", "--site", "icmp", "--name", "nobody", "--data-dir", pollDir, "--down-after", "1", "--icmp-mode", "auto")...)
	po.waitOutput(`may not send ICMP echo requests`, 30*time.Second)

	// Five polls, each with its ICMP sample, then not one event.
	eventually.True(t, 30*time.Second, "5 ICMP samples", func() bool {
		out, err := exec.Command(ipTool, inNS(natsBin, "--server", url, "stream", "info", "METRICS", "--json")...).Output()
		if err != nil {
			return false
		}
		var info struct {
			State struct {
				Msgs uint64 `json:"messages"`
			} `json:"state"`
		}
		return json.Unmarshal(out, &info) == nil && info.State.Msgs >= 5
	})
	out := cli("events", "tail", "--since", "1h", "--no-follow", "--json")
	for _, l := range lines(out) {
		var ev meshmon.Event
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("event %q: %v", l, err)
		}
		t.Errorf("an ICMP check without permission raised %s: %s", ev.Data.Kind, ev.Data.Message)
	}
	if n := strings.Count(po.out.String(), "may not send ICMP"); n != 1 {
		t.Errorf("the poller warned %d times, want once", n)
	}
}
