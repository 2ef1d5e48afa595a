//go:build e2e

// Package e2e runs meshmon as real processes: peers and pollers are started
// from the built binary, killed with SIGKILL, and checked from the outside
// with a NATS client, the stock nats CLI and net-snmp's tools.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/internal/freeport"
	"github.com/meshmon/meshmon/internal/syncbuf"
	"github.com/meshmon/meshmon/peer"
	"github.com/meshmon/meshmon/sim"
)

var meshmonBin string

// parallelTests: three tests run beside each other, after every other
// test (t.Parallel; .ci/run passes -parallel 3): TestMeshFaults;
// TestClusters, which runs the compose test and the two site cluster
// tests one after the other; and TestKillsAndCuts, which runs the tests
// that kill or restart peers and cut a site's link, one after the other.
// Most of TestMeshFaults' 4 to 5 minutes are waits on its faults (a
// 2-minute WAN cut, a lost peer's removal), and the other two chains, 2.5
// and 3 minutes, wait on Compose, their kills and their cuts; one after
// the other the suite took 15 minutes of the CI run's 25. As separate
// parallel tests, TestMeshFaults often started only once the compose test
// had ended, a minute later: the order in which paused tests resume is
// not the source's; so there are as many chains as -parallel allows at
// once. Their faults cannot meet: each cuts its own ports (iptables -w
// waits for another's change to the rules, Docker's included), kills its
// own processes, and freeport reserves a port across them.

// TestClusters runs the tests that bring up whole clusters, one after the
// other, beside TestMeshFaults (see parallelTests).
func TestClusters(t *testing.T) {
	t.Parallel()
	t.Run("Compose", testCompose)
	t.Run("SiteCluster", func(t *testing.T) { testSiteCluster(t, false) })
	t.Run("SiteClusterOperator", func(t *testing.T) { testSiteCluster(t, true) })
}

// TestKillsAndCuts runs the tests that kill or restart peers and cut a
// site's link, one after the other, beside TestMeshFaults (see
// parallelTests).
func TestKillsAndCuts(t *testing.T) {
	t.Parallel()
	t.Run("KillsLoseNothing", testKillsLoseNothing)
	t.Run("ReplayDuringCentralRestart", testReplayDuringCentralRestart)
	t.Run("AlarmStormLeaderKilled", testAlarmStormLeaderKilled)
	t.Run("SiteCutAlarmsPageOnce", testSiteCutAlarmsPageOnce)
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "meshmon-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	meshmonBin = filepath.Join(dir, "meshmon")
	// Peers run plaintext here unless a test gives them a certificate
	// (--tls-cert: start drops this then); tls_test.go, the demo and the
	// compose tests run TLS.
	os.Setenv("MESHMON_PEER_INSECURE", "true")
	// The tests' notification receivers listen on loopback, which a
	// central's notifications may not reach unless allowed.
	os.Setenv("MESHMON_PEER_NOTIFY_ALLOW_LOOPBACK", "true")
	build := exec.Command("go", "build", "-o", meshmonBin, "../../cmd/meshmon")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build meshmon:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// need returns the path of a tool, or skips the test when it is missing;
// under CI=true a missing tool fails the test instead.
func need(t *testing.T, tool string) string {
	t.Helper()
	if p, err := exec.LookPath(tool); err == nil {
		return p
	}
	if tool == "nats" {
		if p, err := filepath.Abs("../../tools/bin/nats"); err == nil {
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed; .ci/run installs it", tool)
	}
	t.Skipf("%s is not installed (install it, or run .ci/run)", tool)
	return ""
}

// freePort returns a free port on 127.0.0.1 (see internal/freeport).
func freePort(t *testing.T, network string) int {
	t.Helper()
	port, err := freeport.Port(network)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// proc is a child process with its output captured.
type proc struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	out    syncbuf.Buffer
	done   chan struct{}
	err    error
	killed bool
}

// start runs bin with args; the process is killed when the test ends.
func start(t *testing.T, name, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, cmd: exec.Command(bin, args...), done: make(chan struct{})}
	if slices.Contains(args, "--tls-cert") {
		p.cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "MESHMON_PEER_INSECURE=") })
	}
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("--- output of %s ---\n%s", name, tail(p.out.String(), 60))
		}
		// MESHMON_E2E_LOGS=DIR keeps every process's whole output, passed
		// or failed, in DIR/NAME.log (appended to across restarts).
		if dir := os.Getenv("MESHMON_E2E_LOGS"); dir != "" {
			if f, err := os.OpenFile(filepath.Join(dir, name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err == nil {
				_, _ = f.WriteString(p.out.String())
				_ = f.Close()
			}
		}
	})
	return p
}

func tail(s string, lines int) string {
	ls := strings.Split(s, "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// runMeshmon runs the meshmon binary as a long-lived process.
func runMeshmon(t *testing.T, name string, args ...string) *proc {
	return start(t, name, meshmonBin, args...)
}

// kill sends SIGKILL to the process group and waits for it.
func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	p.killed = true
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM and waits up to 10 s.
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.t.Errorf("%s did not stop within 10s of SIGTERM", p.name)
		p.kill()
	}
}

// stopClean stops the process with SIGTERM and requires exit status 0.
func (p *proc) stopClean() {
	p.t.Helper()
	p.stop()
	if p.err != nil {
		p.t.Errorf("%s: exit after SIGTERM: %v\n%s", p.name, p.err, tail(p.out.String(), 20))
	}
}

// peerReady is how long a test waits for a peer's ready line: longer than
// the peer's own start timeout, so that a start that fails is reported
// with the peer's error (waitOutput: "exited ... before printing"), not as
// the test's timeout.
const peerReady = peer.DefaultStartTimeout + 10*time.Second

// waitOutput waits until the output matches re and returns the submatches.
func (p *proc) waitOutput(re string, within time.Duration) []string {
	p.t.Helper()
	rx := regexp.MustCompile(re)
	var m []string
	// On a timeout the message carries the process's last lines, where
	// CI's summary of a failing test shows them (.ci/run).
	eventually.NoError(p.t, within, fmt.Sprintf("%s to print %q", p.name, re), func() error {
		select {
		case <-p.done:
			m = rx.FindStringSubmatch(p.out.String())
			if m == nil {
				p.t.Fatalf("%s exited (%v) before printing %q:\n%s", p.name, p.err, re, tail(p.out.String(), 40))
			}
			return nil
		default:
		}
		out := p.out.String()
		if m = rx.FindStringSubmatch(out); m != nil {
			return nil
		}
		return fmt.Errorf("its last lines:\n%s", tail(strings.TrimRight(out, "\n"), 12))
	})
	return m
}

// shortRun bounds a short meshmon command (run, mustRun).
const shortRun = 30 * time.Second

// run runs a short meshmon command and returns its stdout, stderr and exit code.
func run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runWithin(t, shortRun, args...)
}

// runWithin is run with a bound of its own, for a command that takes long
// by design (a bench).
func runWithin(t *testing.T, bound time.Duration, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	cmd := exec.CommandContext(ctx, meshmonBin, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run meshmon %v: %v", args, err)
	}
	return o.String(), e.String(), code
}

// mustRun runs a meshmon command that must succeed.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	return mustRunWithin(t, shortRun, args...)
}

// mustRunWithin is mustRun with a bound of its own.
func mustRunWithin(t *testing.T, bound time.Duration, args ...string) string {
	t.Helper()
	o, e, code := runWithin(t, bound, args...)
	if code != 0 {
		t.Fatalf("meshmon %s: exit %d: %s", strings.Join(args, " "), code, e)
	}
	return o
}

// site is a running peer and poller pair, both real processes.
type site struct {
	t        *testing.T
	name     string
	url      string
	port     int
	peerDir  string
	pollDir  string
	trapPort int
	peer     *proc
	poller   *proc
	global   []string
	nc       *nats.Conn
	js       jetstream.JetStream
	extra    []string
}

func newSite(t *testing.T, name string, pollerArgs ...string) *site {
	t.Helper()
	dir := t.TempDir()
	s := &site{t: t, name: name, port: freePort(t, "tcp"), peerDir: filepath.Join(dir, "peer"), pollDir: filepath.Join(dir, "poller"),
		trapPort: freePort(t, "udp"), extra: pollerArgs}
	s.url = "nats://127.0.0.1:" + strconv.Itoa(s.port)
	s.global = []string{"--server", s.url, "--user", "ops", "--password", "e2e-secret-pw"}
	s.startPeer()
	nc, err := nats.Connect(s.url, nats.UserInfo("ops", "e2e-secret-pw"), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	s.nc = nc
	s.js, _ = jetstream.New(nc)
	s.startPoller()
	return s
}

func (s *site) startPeer() {
	s.peer = runMeshmon(s.t, "peer", "--log-level", "warn", "peer", "run", "--site", s.name, "--listen", "127.0.0.1:"+strconv.Itoa(s.port),
		"--data-dir", s.peerDir, "--auth-user", "ops", "--auth-password", "e2e-secret-pw")
	s.peer.waitOutput(`peer \S+ ready on`, peerReady)
}

func (s *site) startPoller() {
	args := append([]string{}, s.global...)
	args = append(args, "poller", "run", "--site", s.name, "--name", "p1", "--data-dir", s.pollDir,
		"--trap-listen", "127.0.0.1:"+strconv.Itoa(s.trapPort))
	args = append(args, s.extra...)
	s.poller = runMeshmon(s.t, "poller", args...)
	s.poller.waitOutput(`poller started`, 30*time.Second)
}

// cli runs a meshmon admin command against this site.
func (s *site) cli(args ...string) string {
	s.t.Helper()
	return mustRun(s.t, append(append([]string{}, s.global...), args...)...)
}

// streamMsgs reads every message of a stream on the filter.
func (s *site) streamMsgs(stream, filter string) []jetstream.RawStreamMsg {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := s.js.Stream(ctx, stream)
	if err != nil {
		s.t.Fatalf("stream %s: %v", stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		s.t.Fatalf("stream %s info: %v", stream, err)
	}
	var out []jetstream.RawStreamMsg
	if info.State.Msgs == 0 {
		return nil
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		s.t.Fatalf("consumer: %v", err)
	}
	// Tests read in a polling loop; a stream takes 1,000 consumers by default.
	defer func() { _ = st.DeleteConsumer(ctx, cons.CachedInfo().Name) }()
	for {
		batch, err := cons.FetchNoWait(1000)
		if err != nil {
			s.t.Fatalf("fetch: %v", err)
		}
		n := 0
		for m := range batch.Messages() {
			md, _ := m.Metadata()
			out = append(out, jetstream.RawStreamMsg{Subject: m.Subject(), Sequence: md.Sequence.Stream, Header: m.Headers(), Data: m.Data()})
			n++
		}
		if n == 0 {
			return out
		}
	}
}

// events returns the events in the EVENTS stream matching filter.
func (s *site) events(filter string) []meshmon.Event {
	var out []meshmon.Event
	for _, m := range s.streamMsgs("EVENTS", filter) {
		var ev meshmon.Event
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			s.t.Fatalf("event %s is not JSON: %v", m.Subject, err)
		}
		out = append(out, ev)
	}
	return out
}

// waitEvent waits until an event on filter satisfies match.
func (s *site) waitEvent(filter string, within time.Duration, match func(meshmon.Event) bool) meshmon.Event {
	s.t.Helper()
	var got meshmon.Event
	eventually.True(s.t, within, "event on "+filter, func() bool {
		for _, ev := range s.events(filter) {
			if match(ev) {
				got = ev
				return true
			}
		}
		return false
	})
	return got
}

// lineReader yields lines of a growing buffer.
func lines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

// execOut runs a short external command and returns its combined output.
func execOut(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// importDevices adds devs to a site with 'meshmon device import', run by
// cli (a site's command runner), from a file in dir.
func importDevices(t *testing.T, dir string, cli func(args ...string) string, devs []meshmon.Device) {
	t.Helper()
	b, err := json.Marshal(devs)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(dir, "devices.json")
	if err := os.WriteFile(f, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cli("device", "import", f)
}

// waitAnswered waits until every agent has answered a poll: its baseline
// is up.
func waitAnswered(t *testing.T, agents []*sim.Agent) {
	t.Helper()
	eventually.True(t, 30*time.Second, "every device answering its polls", func() bool {
		for _, a := range agents {
			if a.Answered() == 0 {
				return false
			}
		}
		return true
	})
}
