package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/meshmon/meshmon/bus/pollerlink"
	"github.com/meshmon/meshmon/poller"
	"github.com/meshmon/meshmon/tenancy"

	"github.com/meshmon/meshmon/internal/cliflags"
)

func pollerCommand() *cli.Command {
	// The flags set cfg's fields; pollerConfig checks and completes it.
	cfg := &poller.ServiceConfig{Config: poller.DefaultConfig()}
	def := &cfg.Config
	env := func(n string) []string { return []string{"MESHMON_POLLER_" + n} }
	host, _ := os.Hostname()
	return &cli.Command{
		Name:  "poller",
		Usage: "run a poller: SNMP, ICMP and traps for one site's devices",
		Subcommands: []*cli.Command{{
			Name:  "run",
			Usage: "poll the site's devices until SIGINT or SIGTERM",
			Flags: append([]cli.Flag{
				configFlag(),
				&cli.StringFlag{Name: "name", Value: poller.NameFromHost(host), Destination: &def.Name, EnvVars: env("NAME"), Usage: "poller name, unique in the site (taken from a poller credential, --creds, whose user it is)"},
				&cli.StringFlag{Name: "site", Destination: &def.Site, EnvVars: env("SITE"), Usage: "site whose devices to poll (taken from a poller credential, --creds, when not given)"},
				&cli.StringFlag{Name: "tenant", Value: def.Tenant, Destination: &def.Tenant, EnvVars: env("TENANT"), Usage: "tenant the site belongs to (taken from a poller credential, --creds, when not given)"},
				&cli.StringFlag{Name: "data-dir", Destination: &cfg.DataDir, EnvVars: env("DATA_DIR"), Usage: "where the poller keeps its spool and state (bbolt)"},
				&cli.IntFlag{Name: "workers", Value: def.Workers, Destination: &def.Workers, EnvVars: env("WORKERS"), Usage: "probes running at once, at most (workers start as polls come due and end after 10s idle)"},
				&cli.StringFlag{Name: "trap-listen", Destination: &def.TrapListen, EnvVars: env("TRAP_LISTEN"), Usage: "UDP address for SNMP traps, e.g. 0.0.0.0:162 (off when empty)"},
				&cli.IntFlag{Name: "trap-queue", Value: def.TrapQueue, Destination: &def.TrapQueue, EnvVars: env("TRAP_QUEUE"), Usage: fmt.Sprintf("received traps that may wait to be spooled; past it traps are dropped and counted (1 to %d)", poller.MaxTrapQueue)},
				&cli.StringFlag{Name: "trap-users-file", EnvVars: env("TRAP_USERS_FILE"), Usage: "YAML file of the SNMPv3 users whose traps and informs are accepted (mode 0600; v3 is dropped without it)"},
				&cli.StringFlag{Name: "icmp-mode", Value: "auto", EnvVars: env("ICMP_MODE"), Usage: "auto, unprivileged or privileged"},
				&cli.IntFlag{Name: "icmp-count", Value: def.ICMPCount, Destination: &def.ICMPCount, EnvVars: env("ICMP_COUNT"), Usage: "echo requests per ICMP probe"},
				&cli.IntFlag{Name: "down-after", Value: def.Damping.DownAfter, Destination: &def.Damping.DownAfter, EnvVars: env("DOWN_AFTER"), Usage: "failed polls in a row before a down event"},
				&cli.IntFlag{Name: "up-after", Value: def.Damping.UpAfter, Destination: &def.Damping.UpAfter, EnvVars: env("UP_AFTER"), Usage: "good polls in a row before an up event"},
				&cli.IntFlag{Name: "flap-changes", Value: def.Damping.FlapChanges, Destination: &def.Damping.FlapChanges, EnvVars: env("FLAP_CHANGES"), Usage: "changes within --flap-window that make a check flapping (0 = off)"},
				&cli.DurationFlag{Name: "flap-window", Value: def.Damping.FlapWindow, Destination: &def.Damping.FlapWindow, EnvVars: env("FLAP_WINDOW"), Usage: "window for flap detection"},
				&cli.DurationFlag{Name: "topology-interval", Value: def.TopologyInterval, Destination: &def.TopologyInterval, EnvVars: env("TOPOLOGY_INTERVAL"), Usage: "how often each SNMP device's LLDP and CDP neighbours are read and published as its lldp sample (and at its first poll, or a later one while a quarter of the workers read others); 0 = off"},
				cliflags.SizeFlag("spool-max-bytes", 1<<30, env("SPOOL_MAX_BYTES"), "largest spool kept while the peer is away; 0 = the disk is the limit"),
				&cli.IntFlag{Name: "batch", Value: def.BatchSize, Destination: &def.BatchSize, EnvVars: env("BATCH"), Usage: "messages per publish batch"},
				&cli.DurationFlag{Name: "heartbeat", Value: def.HeartbeatEvery, Destination: &def.HeartbeatEvery, EnvVars: env("HEARTBEAT"), Usage: "how often the poller heartbeats to its group"},
				&cli.DurationFlag{Name: "member-timeout", Value: def.MemberTimeout, Destination: &def.MemberTimeout, EnvVars: env("MEMBER_TIMEOUT"), Usage: "a group member silent this long loses its devices to the others"},
				&cli.DurationFlag{Name: "group-lease", Value: def.GroupLease, Destination: &def.GroupLease, EnvVars: env("GROUP_LEASE"), Usage: "the group leader's lease, whole seconds"},
			}, metricsFlags(env, false)...),
			Action: func(c *cli.Context) error { return pollerRun(c, cfg) },
		}},
	}
}

// pollerConfig checks and completes cfg, which 'poller run's flags set,
// once --config is applied.
func pollerConfig(c *cli.Context, cfg *poller.ServiceConfig, log *slog.Logger) error {
	if err := pollerIdentity(c, &cfg.Config); err != nil {
		return err
	}
	if cfg.Site == "" {
		if err := cliflags.Required(c, "site"); err != nil {
			return err
		}
	}
	if err := cliflags.Required(c, "data-dir"); err != nil {
		return err
	}
	if err := checkMetrics(c, false); err != nil {
		return err
	}
	var err error
	if path := c.String("trap-users-file"); path != "" {
		if cfg.TrapUsers, err = poller.LoadTrapUsers(path); err != nil {
			return err
		}
		if open, mode, err := poller.TrapUsersFileMode(path); err == nil && open {
			log.Warn("the trap users file holds SNMPv3 pass phrases but others may read it; chmod 600 it", "file", path, "mode", fmt.Sprintf("%04o", mode))
		}
	}
	if cfg.ICMPMode, err = poller.ParseICMPMode(c.String("icmp-mode")); err != nil {
		return err
	}
	cfg.Version = version
	cfg.SpoolMaxBytes = cliflags.SizeOf(c, "spool-max-bytes")
	cfg.PeerWait = c.Duration("timeout")
	return cfg.Validate()
}

func pollerRun(c *cli.Context, cfg *poller.ServiceConfig) error {
	if err := cliflags.ApplyConfig(c); err != nil {
		return err
	}
	log, err := newLogger(c, os.Stderr)
	if err != nil {
		return err
	}
	if err := pollerConfig(c, cfg, log); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	conn, err := pollerlink.Connect(connConfig(c, "meshmon-poller-"+cfg.Name), log) // which validates it
	if err != nil {
		return err
	}
	defer conn.Close()
	svc, err := poller.NewService(*cfg, conn.Link(), log)
	if err != nil {
		return err
	}
	// The metrics report the poller once it has started (Start waits up
	// to --timeout for the peer first).
	ms, err := serveMetrics(c, nil, log, poller.Collector(svc.Poller))
	if err != nil {
		return err
	}
	defer ms.Close()
	if err := svc.Start(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	select {
	case <-ctx.Done():
	case <-svc.Done():
	}
	return svc.Close()
}

// pollerIdentity checks --tenant, --site and --name against a poller
// credential of meshmon's (--creds) and takes them from it when the flags
// are not given (tenancy.PollerFlags.FromCreds).
func pollerIdentity(c *cli.Context, cfg *poller.Config) error {
	f := tenancy.PollerFlags{Tenant: cfg.Tenant, Site: cfg.Site, Name: cfg.Name, TenantSet: c.IsSet("tenant"), SiteSet: c.IsSet("site"), NameSet: c.IsSet("name")}
	if err := f.FromCreds(c.String("creds")); err != nil {
		return err
	}
	cfg.Tenant, cfg.Site, cfg.Name = f.Tenant, f.Site, f.Name
	return nil
}
