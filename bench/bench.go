package bench

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/bus/pollerlink"
	"github.com/meshmon/meshmon/internal/meshtest"
	"github.com/meshmon/meshmon/internal/proccpu"
	"github.com/meshmon/meshmon/poller"
	"github.com/meshmon/meshmon/sim"
	"github.com/meshmon/meshmon/storage"
)

type publishResult struct {
	Messages      int     `json:"messages"`
	Size          int     `json:"size"`
	SyncAlways    bool    `json:"sync_always"`
	RawMsgsPerSec float64 `json:"raw_async_msgs_per_sec"`
	PollerPerSec  float64 `json:"poller_path_msgs_per_sec"`
	Ratio         float64 `json:"ratio"`
}

// Publish measures the poller's publish path (spool, batch publish, ack)
// against raw JetStream async publish, on the same peer in this process.
func Publish(ctx context.Context, bc PublishConfig) error {
	n, size := bc.Messages, bc.Size
	if n < 1 || size < 1 || size > 1<<20 {
		return fmt.Errorf("--messages must be at least 1 and --size between 1 and 1048576")
	}
	dir, err := os.MkdirTemp("", "meshmon-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := meshtest.Site(ctx, dir, "bench", "bench", bc.SyncAlways)
	if err != nil {
		return err
	}
	defer p.Close()
	nc, err := bus.ConnectWait(ctx, bus.ConnConfig{URL: p.ClientURL(), Name: "bench"})
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return err
	}
	payload := []byte(strings.Repeat("x", size))

	// Baseline: raw JetStream async publish, same size, same peer, with ids.
	t0 := time.Now()
	for i := range n {
		if _, err := js.PublishAsync("mx.bench.raw.x", payload, jetstream.WithMsgID("raw-"+strconv.Itoa(i)), jetstream.WithStallWait(time.Minute)); err != nil {
			return fmt.Errorf("raw publish: %w", err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return ctx.Err()
	}
	raw := time.Since(t0)

	// The poller's path: observations committed to the bbolt spool a poll at
	// a time while the drainer publishes batches and acknowledges them.
	store, err := storage.Open(filepath.Join(dir, "spool.db"), storage.Options{})
	if err != nil {
		return err
	}
	defer store.Close()
	pub := bus.NewPublisher(js)
	per := max(bc.PerCommit, 1)
	t0 = time.Now()
	// Workers commit concurrently, as the poller's do; the spool groups
	// their commits into shared transactions.
	workers := max(bc.Workers, 1)
	errc := commitAll(store, n, per, workers, payload)
	done, producing := 0, true
	drainer := poller.NewDrainer(store, pub, bc.Batch, 30*time.Second)
	defer drainer.Close()
	for done < n {
		pn, _, err := drainer.Once(ctx)
		if err != nil {
			return fmt.Errorf("poller path: %w", err)
		}
		done += pn
		if producing {
			select {
			case err := <-errc:
				if err != nil {
					return fmt.Errorf("spool: %w", err)
				}
				producing = false
			default:
			}
		}
		if pn == 0 {
			runtime.Gosched()
		}
	}
	path := time.Since(t0)

	r := publishResult{Messages: n, Size: size, SyncAlways: bc.SyncAlways,
		RawMsgsPerSec: float64(n) / raw.Seconds(), PollerPerSec: float64(n) / path.Seconds()}
	r.Ratio = r.PollerPerSec / r.RawMsgsPerSec
	return r.print(bc, raw, path)
}

type pollResult struct {
	Devices        int     `json:"devices"`
	Interval       string  `json:"interval"`
	Window         string  `json:"window"`
	PollsDone      uint64  `json:"polls_done"`
	PollsExpected  float64 `json:"polls_expected"`
	Late           uint64  `json:"late_polls"`
	LagMax         string  `json:"max_start_lag"`
	CPUCores       float64 `json:"cpu_cores"`
	CPUPer1000     float64 `json:"cpu_cores_per_1000_devices"`
	RSSMiB         float64 `json:"rss_mib"`
	RSSPer1000MiB  float64 `json:"rss_mib_per_1000_devices"`
	HeapMiB        float64 `json:"heap_inuse_mib"`
	Published      uint64  `json:"messages_published"`
	Spooled        int     `json:"spooled_at_end"`
	OnSchedule     bool    `json:"on_schedule"`
	BaselineRSSMiB float64 `json:"baseline_rss_mib"`
	// Where the RSS is: anonymous memory (the Go heap, stacks, the
	// runtime's own) and pages of files (bbolt maps its file), and of the
	// Go heap what is live, what the collector lets it grow to, and what
	// it holds without having returned it to the system.
	RSSAnonMiB      float64 `json:"rss_anon_mib"`
	RSSFileMiB      float64 `json:"rss_file_mib"`
	BaseAnonMiB     float64 `json:"baseline_rss_anon_mib"`
	BaseFileMiB     float64 `json:"baseline_rss_file_mib"`
	HeapLiveMiB     float64 `json:"heap_live_mib"`
	HeapGoalMiB     float64 `json:"heap_goal_mib"`
	HeapUnusedMiB   float64 `json:"heap_idle_unreleased_mib"`
	StacksMiB       float64 `json:"stacks_mib"`
	RuntimeOtherMiB float64 `json:"runtime_other_mib"`
	Goroutines      int     `json:"goroutines"`
}

// Poll measures one poller's capacity: polls on schedule, CPU and memory
// per 1,000 devices. The simulator and the peer run as child processes, so
// this process's CPU and memory are the poller's alone.
func Poll(ctx context.Context, bc PollConfig) error {
	n, iv, window := bc.Devices, bc.Interval, bc.Measure
	if n < 1 || n > sim.MaxSharedAgents {
		return fmt.Errorf("--devices %d is out of range; use 1 to %d", n, sim.MaxSharedAgents)
	}
	if iv < time.Second || window < iv {
		return fmt.Errorf("--interval must be at least 1s and --measure at least one interval")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	self := bc.Meshmon
	if self == "" {
		var err error
		if self, err = os.Executable(); err != nil {
			return err
		}
	}
	dir, err := os.MkdirTemp("", "meshmon-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	out := bc.stderr()
	base := procStatus()
	baseRSS := base["VmRSS"]

	peerURL, stopPeer, err := child(ctx, self, `peer \S+ ready on (\S+)`, "--log-level", "error", "peer", "run", "--insecure", "--site", "bench", "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "peer"))
	if err != nil {
		return fmt.Errorf("start peer: %w", err)
	}
	defer stopPeer()
	fmt.Fprintf(out, "peer at %s; starting %d simulated devices\n", peerURL, n)
	agents, stopSim, err := startSim(ctx, self, bc.stderr(), n, bc.Interfaces)
	if err != nil {
		return err
	}
	defer stopSim()

	ccfg := bus.ConnConfig{URL: peerURL, Name: "bench"}
	nc, err := bus.ConnectWait(ctx, ccfg)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	inv, err := bus.OpenInventory(ctx, js)
	if err != nil {
		return err
	}
	for _, a := range agents {
		d := meshmon.Device{Name: a.Name, Address: a.Address, Checks: []string{meshmon.CheckSNMP}, Interval: meshmon.Duration(iv),
			Timeout: meshmon.Duration(time.Second), Retries: 1, SNMP: &meshmon.SNMP{Version: meshmon.SNMPv2c, Port: a.Port, Community: "public"}}
		if _, err := inv.Put(ctx, d); err != nil {
			return fmt.Errorf("add device: %w", err)
		}
	}
	fmt.Fprintf(out, "%d devices in the inventory; warming up for one interval (%s), then measuring %s\n", n, iv, window)

	cfg := poller.DefaultConfig()
	cfg.Name, cfg.Site, cfg.Workers, cfg.Version = "bench", "bench", bc.Workers, bc.Version
	if bc.NoTopology {
		cfg.TopologyInterval = 0
	}
	log := errorLogger(bc.stderr())
	po, stop, err := pollerlink.StartReady(ctx, pollerService(cfg, dir), ccfg, log)
	if err != nil {
		return err
	}
	defer stop()
	if err := waitCtx(ctx, iv+iv/2); err != nil {
		return err
	}
	stopProfile, err := StartCPUProfile(bc.CPUProfile)
	if err != nil {
		return err
	}
	s0, cpu0, t0 := po.Stats(), proccpu.Used(), time.Now()
	if err := waitCtx(ctx, window); err != nil {
		stopProfile()
		return err
	}
	s1, cpu1, el := po.Stats(), proccpu.Used(), time.Since(t0)
	stopProfile()
	if err := writeHeapProfile(bc.HeapProfile); err != nil {
		return err
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rss := procStatus()

	r := pollResult{
		Devices: n, Interval: iv.String(), Window: el.Round(time.Second).String(),
		PollsDone: s1.Polls - s0.Polls, PollsExpected: float64(n) * el.Seconds() / iv.Seconds(),
		Late: s1.Late - s0.Late, LagMax: s1.LagMax.Round(time.Millisecond).String(),
		CPUCores: (cpu1 - cpu0).Seconds() / el.Seconds(),
		RSSMiB:   rss["VmRSS"], HeapMiB: bytesMiB(ms.HeapInuse), BaselineRSSMiB: baseRSS,
		Published: s1.Published, Spooled: s1.Spooled,
		RSSAnonMiB: rss["RssAnon"], RSSFileMiB: rss["RssFile"] + rss["RssShmem"],
		BaseAnonMiB: base["RssAnon"], BaseFileMiB: base["RssFile"] + base["RssShmem"],
		HeapLiveMiB: liveHeapMiB(), HeapGoalMiB: bytesMiB(ms.NextGC), HeapUnusedMiB: bytesMiB(ms.HeapIdle - ms.HeapReleased),
		StacksMiB: bytesMiB(ms.StackSys), RuntimeOtherMiB: bytesMiB(ms.MSpanSys + ms.MCacheSys + ms.BuckHashSys + ms.GCSys + ms.OtherSys),
		Goroutines: runtime.NumGoroutine(),
	}
	r.CPUPer1000 = r.CPUCores / float64(n) * 1000
	r.RSSPer1000MiB = (r.RSSMiB - baseRSS) / float64(n) * 1000
	r.OnSchedule = r.Late == 0 && float64(r.PollsDone) >= 0.95*r.PollsExpected
	return r.print(bc)
}

type simAgent struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	Port    int    `json:"port"`
}

// readAgents reads the simulator's JSON lines until it has n agents.
func readAgents(r io.Reader, n int) ([]simAgent, error) {
	sc := bufio.NewScanner(r)
	var out []simAgent
	for len(out) < n && sc.Scan() {
		var a simAgent
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil || a.Name == "" {
			continue
		}
		out = append(out, a)
	}
	if len(out) < n {
		return nil, fmt.Errorf("simulator listed %d of %d agents", len(out), n)
	}
	go func() { _, _ = io.Copy(io.Discard, r) }()
	return out, nil
}

// child starts a meshmon child process and waits for a line matching re;
// it returns the first submatch and a stop function.
func child(ctx context.Context, self, re string, args ...string) (string, func(), error) {
	cmd := exec.CommandContext(ctx, self, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }
	rx := regexp.MustCompile(re)
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if m := rx.FindStringSubmatch(sc.Text()); m != nil {
			go func() { _, _ = io.Copy(io.Discard, stdout) }()
			return m[1], stop, nil
		}
	}
	stop()
	return "", nil, fmt.Errorf("%s exited before printing %q", args, re)
}

func waitCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// procStatus is the sizes in kB of /proc/self/status, in MiB, by name
// (VmRSS, RssAnon, RssFile, ...); empty where there is no /proc.
func procStatus() map[string]float64 {
	m := map[string]float64{}
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return m
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[2] == "kB" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			m[strings.TrimSuffix(f[0], ":")] = kb / 1024
		}
	}
	return m
}

func bytesMiB(b uint64) float64 { return float64(b) / (1 << 20) }

// liveHeapMiB is the heap the last collection found live, in MiB.
func liveHeapMiB() float64 { return bytesMiB(runtimeMetric("/gc/heap/live:bytes")) }

// gcCycles is how many garbage collections this process has completed.
func gcCycles() uint64 { return runtimeMetric("/gc/cycles/total:gc-cycles") }

// runtimeMetric is the value of one of the runtime's uint64 metrics
// (runtime/metrics), 0 if this Go has no such metric.
func runtimeMetric(name string) uint64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// startSim runs 'meshmon sim' of n devices with interfaces each as a child
// process and returns its agents and the function that stops it.
func startSim(ctx context.Context, self string, stderr io.Writer, n, interfaces int) ([]simAgent, func(), error) {
	// One socket for all the agents, so the open-files limit does not cap
	// the devices (on Linux; elsewhere the sim binds a socket each).
	simCmd := exec.CommandContext(ctx, self, "--log-level", "error", "sim", "--agents", strconv.Itoa(n), "--interfaces", strconv.Itoa(interfaces),
		"--base-addr", "127.80.0.1", "--shared-socket", "--json")
	simOut, err := simCmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	simCmd.Stderr = stderr
	if err := simCmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start sim: %w", err)
	}
	stop := func() { _ = simCmd.Process.Signal(syscall.SIGTERM); _ = simCmd.Wait() }
	agents, err := readAgents(simOut, n)
	if err != nil {
		stop()
		return nil, nil, err
	}
	return agents, stop, nil
}

func (r pollResult) print(bc PollConfig) error {
	if bc.JSON {
		return printJSON(bc.stdout(), r)
	}
	tw := tabwriter.NewWriter(bc.stdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "poll capacity: one poller (this process); peer and simulator in child processes\n")
	fmt.Fprintf(tw, "devices\t%d\n", r.Devices)
	fmt.Fprintf(tw, "interval\t%s\n", r.Interval)
	fmt.Fprintf(tw, "window\t%s\n", r.Window)
	fmt.Fprintf(tw, "polls done / expected\t%d / %.0f\n", r.PollsDone, r.PollsExpected)
	fmt.Fprintf(tw, "late polls (>max(interval/10,1s))\t%d\n", r.Late)
	fmt.Fprintf(tw, "max start lag\t%s\n", r.LagMax)
	fmt.Fprintf(tw, "on schedule\t%v\n", r.OnSchedule)
	fmt.Fprintf(tw, "CPU (cores)\t%.3f\n", r.CPUCores)
	fmt.Fprintf(tw, "CPU per 1,000 devices (cores)\t%.4f\n", r.CPUPer1000)
	fmt.Fprintf(tw, "RSS (MiB)\t%.1f (%.1f before the poller)\n", r.RSSMiB, r.BaselineRSSMiB)
	fmt.Fprintf(tw, "RSS per 1,000 devices (MiB)\t%.2f\n", r.RSSPer1000MiB)
	fmt.Fprintf(tw, "Go heap in use (MiB)\t%.1f\n", r.HeapMiB)
	fmt.Fprintf(tw, "  RSS anonymous / of files (MiB)\t%.1f / %.1f (%.1f / %.1f before the poller)\n", r.RSSAnonMiB, r.RSSFileMiB, r.BaseAnonMiB, r.BaseFileMiB)
	fmt.Fprintf(tw, "  heap live at the last GC / GC goal (MiB)\t%.1f / %.1f\n", r.HeapLiveMiB, r.HeapGoalMiB)
	fmt.Fprintf(tw, "  heap free, not returned to the OS (MiB)\t%.1f\n", r.HeapUnusedMiB)
	fmt.Fprintf(tw, "  stacks / runtime metadata (MiB)\t%.1f / %.1f\n", r.StacksMiB, r.RuntimeOtherMiB)
	fmt.Fprintf(tw, "  goroutines\t%d\n", r.Goroutines)
	fmt.Fprintf(tw, "messages published\t%d (%d still spooled)\n", r.Published, r.Spooled)
	return tw.Flush()
}

func (r publishResult) print(bc PublishConfig, raw, path time.Duration) error {
	if bc.JSON {
		return printJSON(bc.stdout(), r)
	}
	tw := tabwriter.NewWriter(bc.stdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "publish, %d messages of %d B, sync_always=%v, nats-server in process, %d spool writers\n", r.Messages, r.Size, r.SyncAlways, max(bc.Workers, 1))
	fmt.Fprintf(tw, "path\tmsgs/s\ttime\n")
	fmt.Fprintf(tw, "raw JetStream async publish\t%.0f\t%s\n", r.RawMsgsPerSec, raw.Round(time.Millisecond))
	fmt.Fprintf(tw, "poller (spool + batch publish + ack)\t%.0f\t%s\n", r.PollerPerSec, path.Round(time.Millisecond))
	fmt.Fprintf(tw, "ratio poller/raw\t%.2f\t\n", r.Ratio)
	return tw.Flush()
}

// commitAll commits n messages of payload to the spool, per at a time, from
// workers goroutines at once, as the poller's workers do; the channel
// gets the first error, or nil, once all are done.
func commitAll(store *storage.DB, n, per, workers int, payload []byte) <-chan error {
	errc := make(chan error, 1)
	go func() {
		var wg sync.WaitGroup
		var firstErr error
		var mu sync.Mutex
		at := time.Now()
		for w := range workers {
			wg.Go(func() {
				for i := w * per; i < n; i += workers * per {
					msgs := make([]meshmon.Message, 0, per)
					for j := i; j < min(i+per, n); j++ {
						msgs = append(msgs, meshmon.Message{Stream: meshmon.StreamMetrics, Site: "bench", Device: "poller", Kind: "x", Time: at, ID: "poller-" + strconv.Itoa(j), Data: payload})
					}
					if err := store.Commit(msgs, nil); err != nil {
						mu.Lock()
						firstErr = cmp.Or(firstErr, err)
						mu.Unlock()
						return
					}
				}
			})
		}
		wg.Wait()
		errc <- firstErr
	}()
	return errc
}

// StartCPUProfile starts a CPU profile into path (nothing when path is
// empty) and returns what stops it.
func StartCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// writeHeapProfile writes a heap profile into path (nothing when path is
// empty).
func writeHeapProfile(path string) error {
	if path == "" {
		return nil
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	return nil
}
