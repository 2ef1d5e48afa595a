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
	"github.com/meshmon/meshmon/internal/eventually"
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

// testCompose (TestClusters/Compose) brings up docker-compose.yml from the repository root, as the
// README says, with TLS on every link, and requires events from both sites
// at central within 120 seconds (read over TLS, verified against the CA the
// compose file's pki service made) with no service restarted on the way;
// then it cuts site a's WAN network and restores it, and requires central
// to see the link come back; then it stops central1 and requires the NOC's
// commands, given the three central peers' published ports, to work still,
// and the noc service to run on without a restart.
func testCompose(t *testing.T) {
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
	// The project's own image: another checkout's compose test builds
	// meshmon:dev from its own binary.
	image := project + ":test"
	ports := []int{freePort(t, "tcp"), freePort(t, "tcp"), freePort(t, "tcp")}
	dc := func(args ...string) (string, error) {
		cmd := exec.Command(compose[0], append(append(compose[1:], "-p", project), args...)...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "MESHMON_IMAGE="+image, "MESHMON_NOC_PORT="+strconv.Itoa(ports[0]),
			"MESHMON_NOC_PORT2="+strconv.Itoa(ports[1]), "MESHMON_NOC_PORT3="+strconv.Itoa(ports[2]))
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
		if out, err := exec.Command("docker", "rmi", image).CombinedOutput(); err != nil {
			t.Logf("docker rmi %s: %v\n%s", image, err, out)
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
	var urls []string
	for _, p := range ports {
		urls = append(urls, "tls://127.0.0.1:"+strconv.Itoa(p))
	}
	url := urls[0]
	// The NOC's commands as the compose file's header gives them: every
	// central peer's URL.
	global := []string{"--server", strings.Join(urls, ","), "--tlsca", caFile, "--user", "ops", "--password", "compose-secret", "--timeout", "3s"}
	sites := map[string]bool{}
	// A three-member central and a two-member site each make their
	// streams once their JetStream has a leader, which on two busy cores
	// can take a while.
	eventually.True(t, 120*time.Second-time.Since(started), "events from both sites at central", func() bool {
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
	// Nothing crash-looped on the way: each service waited for the peers
	// it needs to be healthy.
	noRestarts := func() {
		t.Helper()
		out := mustDocker(t, "ps", "-aq", "--filter", "label=com.docker.compose.project="+project)
		ids := strings.Fields(out)
		if len(ids) == 0 {
			t.Fatal("no containers of the project")
		}
		out = mustDocker(t, append([]string{"inspect", "-f", "{{.Name}} {{.RestartCount}}"}, ids...)...)
		for _, l := range lines(out) {
			if f := strings.Fields(l); len(f) != 2 || f[1] != "0" {
				t.Errorf("restarted: %s", l)
			}
		}
	}
	noRestarts()
	// Without the CA the published port takes no client.
	if _, _, code := run(t, "--server", url, "--user", "ops", "--password", "compose-secret", "--timeout", "3s", "status"); code == 0 {
		t.Error("a client that does not verify central against the CA connected")
	}
	if err := natsPlaintext("127.0.0.1:" + strconv.Itoa(ports[0])); err == nil {
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
	eventually.True(t, 30*time.Second, "central to see site a's link down", func() bool { return !linkUp("a") })
	mustDocker(t, "network", "connect", network, container)
	eventually.True(t, 30*time.Second, "central to see site a's link up again", func() bool { return linkUp("a") })

	// Stop central1: the NOC's commands reach central through the other
	// two (EVENTS may need a moment to elect a new leader), and the noc
	// service's tail carries on.
	if out, err := dc("stop", "central1"); err != nil {
		t.Fatalf("compose stop central1: %v\n%s", err, out)
	}
	if _, _, code := run(t, "--server", url, "--tlsca", caFile, "--user", "ops", "--password", "compose-secret", "--timeout", "3s", "status"); code == 0 {
		t.Fatal("central1's port still answers after 'compose stop central1'")
	}
	var n int
	eventually.True(t, 30*time.Second, "events at central through central2 or central3 with central1 stopped", func() bool {
		out, _, code := run(t, append(global, "events", "tail", "--since", "1h", "--no-follow", "--json")...)
		n = len(lines(out))
		return code == 0 && n > 0
	})
	t.Logf("%d events read at central with central1 stopped", n)
	eventually.True(t, 30*time.Second, "status with central1 stopped", func() bool {
		_, _, code := run(t, append(global, "status")...)
		return code == 0
	})
	out, err = dc("ps", "-q", "noc")
	if err != nil || strings.TrimSpace(out) == "" {
		t.Fatalf("compose ps noc: %v\n%s", err, out)
	}
	if out := mustDocker(t, "inspect", "-f", "{{.State.Running}}", strings.TrimSpace(out)); strings.TrimSpace(out) != "true" {
		t.Errorf("the noc service is not running with central1 stopped: %s", out)
	}
	noRestarts()
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
