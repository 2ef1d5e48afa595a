//go:build e2e

package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/internal/eventually"
)

// TestPeerDiskFull runs a site peer on a 64 MiB file system with the
// default stream limits (fitted to it) and a poller taking 200 traps a
// second. A file fills the disk: the peer refuses writes, the poller says
// "peer disk full" and spools, and the stock nats CLI's JetStream publish
// gets the refusal. The file is removed: the peer stores again by itself,
// without a restart, and EVENTS ends with every trap sent, once.
func TestPeerDiskFull(t *testing.T) {
	if os.Getuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("TestPeerDiskFull needs root (it mounts a tmpfs to fill), and CI=true requires it to run")
		}
		t.Skip("skipping: needs root to mount a tmpfs to fill (run as root, or set CI=true to make this a failure)")
	}
	natsCLI := need(t, "nats")
	dir := t.TempDir()
	small := filepath.Join(dir, "peer")
	if err := os.MkdirAll(small, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", small).CombinedOutput(); err != nil {
		t.Fatalf("mount a tmpfs: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", small).Run() })

	s := &site{t: t, name: "disk", port: freePort(t, "tcp"), peerDir: small, pollDir: filepath.Join(dir, "poller"), trapPort: freePort(t, "udp")}
	s.url = "nats://127.0.0.1:" + strconv.Itoa(s.port)
	s.global = []string{"--server", s.url, "--user", "ops", "--password", "e2e-secret-pw"}
	s.startPeer()
	s.peer.waitOutput(`default stream size limits do not fit`, 10*time.Second)
	nc, err := nats.Connect(s.url, nats.UserInfo("ops", "e2e-secret-pw"), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	s.nc = nc
	s.js, _ = jetstream.New(nc)
	s.startPoller()

	load := startTrapLoad(t, s.trapPort, 200)
	defer func() {
		select {
		case <-load.stop:
		default:
			load.finish()
		}
	}()
	eventually.True(t, 30*time.Second, "traps stored", func() bool {
		n, err := eventCount(s.js, "ev.disk.>")
		return err == nil && n >= 200
	})

	filler := filepath.Join(small, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill: %v", err)
			}
			break
		}
	}
	f.Close()
	s.peer.waitOutput(`store disk full: refusing writes`, time.Minute)
	s.poller.waitOutput(`peer disk full; spooling`, time.Minute)
	out, err := exec.Command(natsCLI, "--server", s.url, "--user", "ops", "--password", "e2e-secret-pw", "pub", "--jetstream", "ev.disk.cli.x", "by hand").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "peer disk full") {
		t.Errorf("nats pub --jetstream on a full disk: %v\n%s\nwant a failure that says peer disk full", err, out)
	}
	// status says the store is full and the figures are unknown, rather
	// than show the pollers' last ones.
	if out := mustRun(t, append(s.global, "status")...); !strings.Contains(out, "store: peer disk full") || strings.Contains(out, "POLLER") {
		t.Errorf("status on a full disk:\n%s\nwant the store's refusal and no poller figures", out)
	}
	if out := mustRun(t, append(s.global, "status", "--json")...); !strings.Contains(out, `"store_full": "peer disk full`) || !strings.Contains(out, `"pollers": null`) {
		t.Errorf("status --json on a full disk:\n%s\nwant store_full and pollers null", out)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	s.peer.waitOutput(`store has room again; storing resumed`, 30*time.Second)
	s.poller.waitOutput(`peer is back; spool draining`, 30*time.Second)
	before, _ := eventCount(s.js, "ev.disk.>")
	eventually.True(t, 30*time.Second, "new traps stored after the disk had room", func() bool {
		n, err := eventCount(s.js, "ev.disk.>")
		return err == nil && n > before+200
	})
	sent := load.finish()
	eventually.True(t, time.Minute, "every trap sent stored", func() bool {
		n, err := eventCount(s.js, "ev.disk.>")
		return err == nil && n >= uint64(sent)
	})
	evs := readEvents(t, s.js, "ev.disk.>")
	seen := make(map[string]bool, len(evs))
	for _, e := range evs {
		if seen[e.id] {
			t.Errorf("event %s stored twice", e.id)
		}
		seen[e.id] = true
	}
	if int64(len(evs)) != sent {
		t.Errorf("EVENTS holds %d trap events, %d traps were sent", len(evs), sent)
	}
	t.Logf("%d traps sent, %d stored once each, through a full disk", sent, len(evs))
}
