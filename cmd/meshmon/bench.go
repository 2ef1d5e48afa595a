package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/meshmon/meshmon/bench"
	"github.com/meshmon/meshmon/internal/cliflags"
	"github.com/meshmon/meshmon/poller"
)

// benchOutput is where a bench prints, from --json.
func benchOutput(c *cli.Context) bench.Output { return bench.Output{JSON: c.Bool("json")} }

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "measure meshmon on this machine; prints tables",
		// An interrupted bench (Ctrl-C, SIGTERM) stops the processes it
		// started before it exits, rather than leave them running; a
		// second signal ends it at once.
		Before: func(c *cli.Context) error {
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			context.AfterFunc(ctx, stop)
			c.Context = ctx
			return nil
		},
		Subcommands: []*cli.Command{
			benchPublishCommand(),
			benchPollCommand(),
			benchTrapsCommand(),
			benchMeshCommand(),
			benchFailoverCommand(),
			benchTenantsCommand(),
		},
	}
}

func benchPublishCommand() *cli.Command {
	return &cli.Command{
		Name:  "publish",
		Usage: "poller publish path (spool + batch publish + ack) against raw JetStream async publish, same peer, same run",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "messages", Value: 20000, Usage: "messages per run"},
			&cli.IntFlag{Name: "size", Value: 512, Usage: "message size in bytes"},
			&cli.IntFlag{Name: "batch", Value: poller.DefaultConfig().BatchSize, Usage: "poller publish batch"},
			&cli.IntFlag{Name: "per-commit", Value: 8, Usage: "messages per spool commit (one poll's worth)"},
			&cli.IntFlag{Name: "workers", Value: 16, Usage: "goroutines committing to the spool at once, as poller workers do"},
			&cli.BoolFlag{Name: "sync-always", Value: true, Usage: "peer fsyncs every write"},
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			return bench.Publish(c.Context, bench.PublishConfig{Output: benchOutput(c), Messages: c.Int("messages"), Size: c.Int("size"),
				Batch: c.Int("batch"), PerCommit: c.Int("per-commit"), Workers: c.Int("workers"), SyncAlways: c.Bool("sync-always")})
		},
	}
}

func benchPollCommand() *cli.Command {
	return &cli.Command{
		Name:  "poll",
		Usage: "poll capacity: one poller, N simulated devices, CPU and memory per 1,000 devices",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "devices", Value: 10000, Usage: "simulated devices"},
			&cli.DurationFlag{Name: "interval", Value: time.Minute, Usage: "poll interval"},
			&cli.DurationFlag{Name: "measure", Value: 2 * time.Minute, Usage: "measurement window, after one interval of warm-up"},
			&cli.IntFlag{Name: "workers", Value: poller.DefaultConfig().Workers, Usage: "poller workers"},
			&cli.IntFlag{Name: "interfaces", Value: 4, Usage: "interfaces per simulated device"},
			&cli.BoolFlag{Name: "no-topology", Usage: "the poller reads no LLDP/CDP neighbours (its --topology-interval 0; by default each device's first poll reads them)"},
			&cli.StringFlag{Name: "cpu-profile", Usage: "write a CPU profile of the poller over the measurement window to this `FILE`"},
			&cli.StringFlag{Name: "heap-profile", Usage: "write a heap profile of the poller at the end of the window to this `FILE`"},
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			return bench.Poll(c.Context, bench.PollConfig{Output: benchOutput(c), Devices: c.Int("devices"), Interval: c.Duration("interval"),
				Measure: c.Duration("measure"), Workers: c.Int("workers"), Interfaces: c.Int("interfaces"), Version: version,
				NoTopology: c.Bool("no-topology"), CPUProfile: c.String("cpu-profile"), HeapProfile: c.String("heap-profile")})
		},
	}
}

func benchTrapsCommand() *cli.Command {
	return &cli.Command{
		Name:  "traps",
		Usage: "trap intake: v2c traps per second that become stored events, step by step up to where loss begins",
		Flags: []cli.Flag{
			&cli.IntSliceFlag{Name: "rates", Value: cli.NewIntSlice(5000, 10000, 20000, 40000, 60000), Usage: "traps per second to send, one step each"},
			&cli.DurationFlag{Name: "step", Value: 3 * time.Second, Usage: "how long each step sends"},
			&cli.IntFlag{Name: "queue", Value: poller.DefaultConfig().TrapQueue, Usage: "the poller's trap queue"},
			&cli.IntFlag{Name: "malformed-rate", Usage: "invalid packets per second (random bytes, truncated traps) sent between the traps of each step"},
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			return bench.Traps(c.Context, bench.TrapsConfig{Output: benchOutput(c), Rates: c.IntSlice("rates"), Step: c.Duration("step"),
				Queue: c.Int("queue"), MalformedRate: c.Int("malformed-rate"), Version: version})
		},
	}
}

func benchMeshCommand() *cli.Command {
	return &cli.Command{
		Name:  "mesh",
		Usage: "central ingest from several sites, catch-up after a WAN cut, and observation-to-central latency hop by hop, against 'nats bench js pub' on the same central cluster",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "sites", Value: 3, Usage: "site peers"},
			&cli.IntFlag{Name: "events", Value: 20000, Usage: "events per site for the ingest run, and piled up per site during the WAN cut"},
			&cli.IntFlag{Name: "rate", Value: 5000, Usage: "events per second, all sites together, for the latency run"},
			&cli.IntFlag{Name: "cuts", Value: 3, Usage: "WAN cuts of every site, each timed on its own"},
			&cli.DurationFlag{Name: "cut-for", Value: 30 * time.Second, Usage: "length of each WAN cut"},
			&cli.StringFlag{Name: "cut-mode", Value: "silent", Usage: "how the WAN is cut: 'silent' loses what the links carry until their ends give up on them, as a link that drops packets does; 'loud' closes the links at once"},
			&cli.DurationFlag{Name: "latency-for", Value: 10 * time.Second, Usage: "length of the latency run"},
			&cli.DurationFlag{Name: "wan-delay", Usage: "latency each way that the WAN proxies add to every site's link to central (a WAN's round trip is twice it; 0: loopback's alone)"},
			&cli.IntFlag{Name: "drain-batch", Value: poller.DefaultConfig().BatchSize, Usage: "the latency run's poller publish batch"},
			&cli.BoolFlag{Name: "site-processes", Usage: "run each site peer in a process of its own ('meshmon peer run') instead of in this process"},
			&cli.IntFlag{Name: "publishers", Value: 1, Usage: "publishers per site in the ingest run and the cuts, each with one batch of 100 in flight"},
			&cli.BoolFlag{Name: "central-sync-always", Value: true, Usage: "central's peers fsync every write, as a central peer does by default; false measures them without (the sites keep it)"},
			&cli.StringFlag{Name: "cpu-profile", Usage: "write CPU profiles of this process over the ingest run, the nats bench anchor and each catch-up to `PREFIX`-ingest.pprof, PREFIX-natsbench.pprof and PREFIX-catchupN.pprof"},
			&cli.StringFlag{Name: "latency-trace", Usage: "write every event of the latency run to `FILE` (CSV: its id and site, the Unix time it was observed, and the milliseconds from the run's start at which it passed each point of its path)"},
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			cfg := bench.MeshConfig{Output: benchOutput(c), Sites: c.Int("sites"), Events: c.Int("events"), Rate: c.Int("rate"),
				Cuts: c.Int("cuts"), CutFor: c.Duration("cut-for"), CutMode: c.String("cut-mode"), LatencyFor: c.Duration("latency-for"), WANDelay: c.Duration("wan-delay"), SiteProcesses: c.Bool("site-processes"), DrainBatch: c.Int("drain-batch"),
				CPUProfile: c.String("cpu-profile"), CentralNoSync: !c.Bool("central-sync-always"),
				Publishers: c.Int("publishers"), LatencyTrace: c.String("latency-trace")}
			// The peers log only when asked to (--log-level given), to stderr.
			if c.IsSet("log-level") {
				var err error
				if cfg.PeerLog, err = newLogger(c, os.Stderr); err != nil {
					return err
				}
			}
			// The peers run in this process: as many Ps as 'peer run' gives one.
			peerProcs()
			return bench.Mesh(c.Context, cfg)
		},
	}
}

func benchFailoverCommand() *cli.Command {
	return &cli.Command{
		Name: "failover",
		Usage: "a poller group of real processes at each size: kill a member again and again; kill to each moved device's first sample, " +
			"devices moved by each leave and return, devices polled twice",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "devices", Value: "60", Usage: "simulated devices, one size or several (60,1500,10000), one run each"},
			&cli.StringFlag{Name: "interval", Value: "1s", Usage: "the devices' poll interval: one for every size, or one per size (1s,5s,60s)"},
			&cli.IntFlag{Name: "kills", Value: 3, Usage: "kills of each size, each followed by the victim's return"},
			&cli.StringFlag{Name: "signal", Value: "kill", Usage: "kill (SIGKILL, then a restart), term (SIGTERM: a graceful leave, then a restart) or stop (SIGSTOP, then SIGCONT: its samples under the assignment before the hand-over are counted)"},
			&cli.StringFlag{Name: "victim", Value: "leader", Usage: "whom to kill: leader or member"},
			&cli.IntFlag{Name: "pollers", Value: 3, Usage: "members of the group"},
			&cli.IntFlag{Name: "sims", Usage: "simulator processes sharing each size's devices (0: one per 15,000 devices; each holds a socket a device)"},
			&cli.IntFlag{Name: "workers", Usage: "the pollers' --workers (0: their default)"},
			&cli.DurationFlag{Name: "heartbeat", Usage: "the pollers' --heartbeat (0: their default)"},
			&cli.DurationFlag{Name: "member-timeout", Usage: "the pollers' --member-timeout (0: their default)"},
			&cli.StringFlag{Name: "poller-args", Usage: "more flags for the pollers, separated by spaces (\"--batch 1024\")"},
			&cli.DurationFlag{Name: "soak", Usage: "instead of killing: watch each size's group of live members this long and count the devices moved from a live poller (false failovers)"},
			&cli.BoolFlag{Name: "keep", Usage: "keep the directory of the processes' data and logs (it is kept after an error)"},
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			sizes, err := failoverSizes(c.String("devices"), c.String("interval"))
			if err != nil {
				return err
			}
			return bench.Failover(c.Context, bench.FailoverConfig{Output: benchOutput(c), Sizes: sizes, Pollers: c.Int("pollers"), Kills: c.Int("kills"),
				Signal: c.String("signal"), Victim: c.String("victim"), Sims: c.Int("sims"), Workers: c.Int("workers"), Heartbeat: c.Duration("heartbeat"),
				MemberTimeout: c.Duration("member-timeout"), PollerArgs: strings.Fields(c.String("poller-args")), Soak: c.Duration("soak"), Keep: c.Bool("keep")})
		},
	}
}

// failoverSizes pairs --devices (a list) with --interval (one for every
// size, or a list as long as --devices).
func failoverSizes(devices, intervals string) ([]bench.FailoverSize, error) {
	ds, is := strings.Split(devices, ","), strings.Split(intervals, ",")
	if len(is) != 1 && len(is) != len(ds) {
		return nil, fmt.Errorf("--interval %q: %d intervals for the %d sizes of --devices; give one for every size or one per size", intervals, len(is), len(ds))
	}
	sizes := make([]bench.FailoverSize, len(ds))
	for i, d := range ds {
		n, err := strconv.Atoi(strings.TrimSpace(d))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("--devices %q: %q is not a device count (a whole number, 1 or more)", devices, d)
		}
		iv := is[min(i, len(is)-1)]
		dur, err := time.ParseDuration(strings.TrimSpace(iv))
		if err != nil || dur < time.Second {
			return nil, fmt.Errorf("--interval %q: %q is not an interval of 1s or more (1s, 5s, 1m)", intervals, iv)
		}
		sizes[i] = bench.FailoverSize{Devices: n, Interval: dur}
	}
	return sizes, nil
}

func benchTenantsCommand() *cli.Command {
	return &cli.Command{
		Name: "tenants",
		Usage: "create many tenants on one central peer in operator mode, as 'tenant create' does: time per create, " +
			"the process's memory, and one tenant's ingest rate before and after, and while another tenant over its disk limit keeps publishing",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "tenants", Value: 1000, Usage: "tenants to create"},
			&cli.IntFlag{Name: "msgs", Value: 20000, Usage: "messages of one ingest run"},
			&cli.IntFlag{Name: "size", Value: 512, Usage: "message size in bytes"},
			cliflags.SizeFlag("disk", 64<<20, nil, "each tenant's disk limit"),
			&cli.IntFlag{Name: "neighbour-rate", Value: 1000, Usage: "messages a second the tenant over its disk limit publishes during the first neighbour run"},
			&cli.DurationFlag{Name: "settle", Value: 150 * time.Second, Usage: "wait this long after the last create before measuring again: nats-server writes each new stream's state 2 to 2.5 minutes after its creation (0: measure at once)"},
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			peerProcs() // central runs in this process
			return bench.Tenants(c.Context, bench.TenantsConfig{Output: benchOutput(c), Tenants: c.Int("tenants"), Msgs: c.Int("msgs"),
				Size: c.Int("size"), Disk: cliflags.SizeOf(c, "disk"), NeighbourRate: c.Int("neighbour-rate"), Settle: c.Duration("settle")})
		},
	}
}
