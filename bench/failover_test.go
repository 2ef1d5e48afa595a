package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/internal/syncbuf"
)

// TestFailoverProcesses runs 'meshmon bench failover' with real processes
// of a meshmon built here, at the smallest size: a leader SIGKILLed once
// moves its devices and no other, its return takes its fair share back,
// and no device is polled by two pollers once the group settled.
func TestFailoverProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a peer, a simulator and three pollers (about 10 s)")
	}
	if runtime.GOOS != "linux" {
		t.Skip("the simulator's agents listen on 127.90.0.1 and up, which only Linux routes without setup")
	}
	bin := buildMeshmon(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	bc := FailoverConfig{Output: Output{JSON: true, Stdout: &stdout, Stderr: &stderr}, Sizes: []FailoverSize{{Devices: 60, Interval: time.Second}},
		Pollers: 3, Kills: 1, Signal: "kill", Victim: "leader", Meshmon: bin}
	if err := Failover(ctx, bc); err != nil {
		t.Fatalf("bench failover: %v\n%s", err, stderr.String())
	}
	var res []failoverResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil || len(res) != 1 {
		t.Fatalf("JSON: %v (%d results)\n%s", err, len(res), stdout.String())
	}
	r := res[0]
	if r.Devices != 60 || r.Kills != 1 || r.Owned < 1 || r.Moved != r.Owned || r.Duplicates != 0 || len(r.RejoinMoved) != 1 || r.SampleMax == "-" {
		t.Errorf("devices %d, kills %d, moved %d of the victim's %d, duplicates %d, returns moved %v, max %s; want 60, 1, moved = the victim's, 0 duplicates, one return",
			r.Devices, r.Kills, r.Moved, r.Owned, r.Duplicates, r.RejoinMoved, r.SampleMax)
	}
	if share := r.FairShare; r.RejoinMoved[0] < int(share)-1 || r.RejoinMoved[0] > int(share)+1 {
		t.Errorf("the return moved %d devices; want its fair share, %.1f", r.RejoinMoved[0], share)
	}
	for _, line := range []string{
		`(?m)^site fb: 60 devices \(interval 1s\), 3 pollers, 1 simulators, leader p\d; load `,
		`(?m)^kill 1 at [\d:.]+: p\d \(leader true\), \d+ devices moved: p50 \S+ p95 \S+ max \S+ \(lease lapsed \S+, won \S+, assignment \S+; first sample \S+\)$`,
		`(?m)^  polled \(the samples' time\): p50 \S+ max \S+; p\d: assignment \S+, states read \S+, taken over \S+; p\d: `,
		`(?m)^  p\d's leave moved \d+ devices \(it had \d+\); its return moved \d+ \(fair share 20\.0\); devices polled by another poller than their owner since: 0$`,
		`(?m)^RESULT kill devices 60 interval 1s kills 1 \(leader\) moved \d+ `,
	} {
		if !regexp.MustCompile(line).MatchString(stderr.String()) {
			t.Errorf("no line matching %s in:\n%s", line, stderr.String())
		}
	}
}

func ms(ns ...int) []time.Duration {
	ds := make([]time.Duration, len(ns))
	for i, n := range ns {
		ds[i] = time.Duration(n) * time.Millisecond
	}
	return ds
}

// TestFailoverTable checks the summary's shape: a header and a row a size.
func TestFailoverTable(t *testing.T) {
	var b bytes.Buffer
	rs := []failoverResult{
		{Devices: 60, Interval: "1s", Signal: "kill", Victim: "leader", Kills: 3, Owned: 60, Moved: 60,
			failoverTimes: timesOf(ms(300, 350, 360), ms(290, 300, 340)),
			RejoinMoved:   []int{20, 20, 20}, FairShare: 20, Load: "1.00 1.00 1.00 → 2.00 1.00 1.00"},
		{Devices: 1500, Interval: "5s", Soak: &failoverSoak{For: "1m0s"}, Load: "2.00 1.00 1.00 → 2.00 1.00 1.00"},
	}
	if err := printFailover(&b, rs); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "DEVICES") {
		t.Fatalf("want a header and two rows, got:\n%s", b.String())
	}
	for i, want := range []string{
		`^60 +1s +kill \(leader\) +3 +60 \(60\) +350ms / 360ms / 360ms +300ms / 340ms +20, 20, 20 \(20\.0\) +0 +1\.00 1\.00 1\.00 → 2\.00`,
		`^1500 +5s +soak 1m0s +- +0 from a live poller `,
	} {
		if !regexp.MustCompile(want).MatchString(lines[i+1]) {
			t.Errorf("row %d: %q does not match %s", i+1, lines[i+1], want)
		}
	}
}

// TestFailoverInterrupted: 'meshmon bench failover' stopped with SIGTERM
// (or Ctrl-C) stops the site peer, the simulator and the pollers it
// started before it exits. It used to exit at once and leave them
// running, holding their ports and the simulator's addresses.
func TestFailoverInterrupted(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a peer, a simulator and three pollers")
	}
	if runtime.GOOS != "linux" {
		t.Skip("finds the bench's processes in /proc, and the simulator's agents listen on 127.90.0.1 and up, which only Linux routes without setup")
	}
	bin := buildMeshmon(t)
	// Every process the bench starts inherits its environment, mark
	// included: what is left of the run is what still has the mark.
	mark := fmt.Sprintf("MESHMON_TEST_RUN=%d-%d", os.Getpid(), time.Now().UnixNano())
	left := func() []string {
		var pids []string
		dirs, _ := os.ReadDir("/proc")
		for _, d := range dirs {
			env, err := os.ReadFile(filepath.Join("/proc", d.Name(), "environ"))
			if err == nil && slices.Contains(strings.Split(string(env), "\x00"), mark) {
				pids = append(pids, d.Name())
			}
		}
		return pids
	}
	var out syncbuf.Buffer
	cmd := exec.Command(bin, "bench", "failover", "--devices", "60", "--interval", "1s", "--kills", "3")
	cmd.Env = append(os.Environ(), mark)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		for _, pid := range left() { // what the test failed to see stopped
			if n, err := strconv.Atoi(pid); err == nil {
				if p, err := os.FindProcess(n); err == nil {
					_ = p.Kill()
				}
			}
		}
	})
	// The site's line comes once the peer, the simulator and the
	// pollers run.
	eventually.True(t, time.Minute, "the bench's site line", func() bool { return strings.Contains(out.String(), "site fb: ") })
	if n := len(left()); n < 5 {
		t.Fatalf("%d processes of the run before the signal, want the bench, a peer, a simulator and pollers", n)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatalf("the bench did not exit within a minute of SIGTERM:\n%s", out.String())
	}
	if pids := left(); len(pids) > 0 {
		t.Errorf("processes of the bench still running after it exited: %v\n%s", pids, out.String())
	}
}

// buildMeshmon builds the meshmon command of this tree, for the benches
// that start it as processes, and returns its path.
func buildMeshmon(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "meshmon")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/meshmon").CombinedOutput(); err != nil {
		t.Fatalf("build meshmon: %v\n%s", err, out)
	}
	return bin
}
