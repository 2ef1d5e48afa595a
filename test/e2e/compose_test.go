//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshmon/meshmon"
)

// composeCmd returns how to run Compose here: the docker plugin (v2) or
// docker-compose (v1); under CI=true a missing one fails the test.
func composeCmd(t *testing.T) []string {
	t.Helper()
	if _, err := exec.LookPath("docker"); err == nil {
		if exec.Command("docker", "compose", "version").Run() == nil {
			return []string{"docker", "compose"}
		}
	}
	if p, err := exec.LookPath("docker-compose"); err == nil {
		return []string{p}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("docker compose (or docker-compose) is missing, and CI=true requires the compose test to run")
	}
	t.Skip("needs docker compose (or docker-compose)")
	return nil
}

// TestCompose brings up docker-compose.yml from the repository root, as the
// README says, with TLS on every link, and requires events from both sites
// at central within 120 seconds (read over TLS, verified against the CA the
// compose file's pki service made); then it cuts site a's WAN network and restores it, and requires
// central to see the link come back.
func TestCompose(t *testing.T) {
	compose := composeCmd(t)
	if out, err := exec.Command("docker", "info").CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("docker engine not reachable, and CI=true requires the compose test to run: %v\n%s", err, out)
		}
		t.Skipf("docker engine not reachable: %v", err)
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", filepath.Join(root, "dist", "meshmon"), "./cmd/meshmon")
	build.Dir, build.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the static binary: %v\n%s", err, out)
	}
	project := fmt.Sprintf("meshmon-e2e-%d", os.Getpid())
	port := freePort(t, "tcp")
	dc := func(args ...string) (string, error) {
		cmd := exec.Command(compose[0], append(append(compose[1:], "-p", project), args...)...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "MESHMON_NOC_PORT="+strconv.Itoa(port))
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := dc("logs", "--tail", "30")
			t.Logf("compose logs:\n%s", out)
		}
		if out, err := dc("down", "-v", "--remove-orphans"); err != nil {
			t.Logf("compose down: %v\n%s", err, out)
		}
	})
	started := time.Now()
	if out, err := dc("up", "-d", "--build"); err != nil {
		t.Fatalf("compose up: %v\n%s", err, out)
	}

	// The mesh runs TLS: the CA the pki service made verifies central, as
	// the compose file's header says.
	out, err := dc("ps", "-q", "pki")
	if err != nil || strings.TrimSpace(out) == "" {
		t.Fatalf("compose ps pki: %v\n%s", err, out)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	mustDocker(t, "cp", strings.TrimSpace(out)+":/pki/ca.pem", caFile)
	url := "tls://127.0.0.1:" + strconv.Itoa(port)
	global := []string{"--server", url, "--tlsca", caFile, "--user", "ops", "--password", "compose-secret", "--timeout", "3s"}
	sites := map[string]bool{}
	// A three-member central and a two-member site each make their
	// streams once their JetStream has a leader, which on two busy cores
	// can take a while.
	waitFor(t, 120*time.Second-time.Since(started), "events from both sites at central", func() bool {
		out, _, code := run(t, append(global, "events", "tail", "--since", "1h", "--no-follow", "--json")...)
		if code != 0 {
			return false
		}
		for _, l := range lines(out) {
			var ev meshmon.Event
			if json.Unmarshal([]byte(l), &ev) == nil {
				sites[ev.Data.Site] = true
			}
		}
		return sites["a"] && sites["b"]
	})
	t.Logf("events from sites a and b at central %s after 'compose up'", time.Since(started).Round(time.Second))
	// Without the CA the published port takes no client.
	if _, _, code := run(t, "--server", url, "--user", "ops", "--password", "compose-secret", "--timeout", "3s", "status"); code == 0 {
		t.Error("a client that does not verify central against the CA connected")
	}
	if err := natsPlaintext("127.0.0.1:" + strconv.Itoa(port)); err == nil {
		t.Error("central's published port answered a plaintext CONNECT")
	}

	// Cut site a off its WAN network, then restore it.
	linkUp := func(site string) bool {
		out, _, code := run(t, append(global, "site", "list", "--json")...)
		if code != 0 {
			return false
		}
		var links []struct {
			Name string `json:"name"`
			Up   bool   `json:"up"`
		}
		if json.Unmarshal([]byte(out), &links) != nil {
			return false
		}
		for _, l := range links {
			if l.Name == site {
				return l.Up
			}
		}
		return false
	}
	out, err = dc("ps", "-q", "site-a")
	if err != nil {
		t.Fatalf("compose ps: %v\n%s", err, out)
	}
	container := strings.TrimSpace(out)
	network := project + "_wan-a"
	mustDocker(t, "network", "disconnect", network, container)
	waitFor(t, 30*time.Second, "central to see site a's link down", func() bool { return !linkUp("a") })
	mustDocker(t, "network", "connect", network, container)
	waitFor(t, 30*time.Second, "central to see site a's link up again", func() bool { return linkUp("a") })
}

// mustDocker runs docker and returns its output.
func mustDocker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
