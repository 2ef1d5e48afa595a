package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/urfave/cli/v2"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/poller"
	"github.com/meshmon/meshmon/storage"
)

func pollerCommand() *cli.Command {
	def := poller.DefaultConfig()
	env := func(n string) []string { return []string{"MESHMON_POLLER_" + n} }
	host, _ := os.Hostname()
	return &cli.Command{
		Name:  "poller",
		Usage: "run a poller: SNMP, ICMP and traps for one site's devices",
		Subcommands: []*cli.Command{{
			Name:  "run",
			Usage: "poll the site's devices until SIGINT or SIGTERM",
			Flags: []cli.Flag{
				configFlag(),
				&cli.StringFlag{Name: "name", Value: sanitizeName(host), EnvVars: env("NAME"), Usage: "poller name, unique in the site"},
				&cli.StringFlag{Name: "site", EnvVars: env("SITE"), Usage: "site whose devices to poll"},
				&cli.StringFlag{Name: "tenant", Value: def.Tenant, EnvVars: env("TENANT"), Usage: "tenant the site belongs to"},
				&cli.StringFlag{Name: "data-dir", EnvVars: env("DATA_DIR"), Usage: "where the poller keeps its spool and state (bbolt)"},
				&cli.IntFlag{Name: "workers", Value: def.Workers, EnvVars: env("WORKERS"), Usage: "probes running at once"},
				&cli.StringFlag{Name: "trap-listen", EnvVars: env("TRAP_LISTEN"), Usage: "UDP address for SNMP traps, e.g. 0.0.0.0:162 (off when empty)"},
				&cli.StringFlag{Name: "icmp-mode", Value: "auto", EnvVars: env("ICMP_MODE"), Usage: "auto, unprivileged or privileged"},
				&cli.IntFlag{Name: "icmp-count", Value: def.ICMPCount, EnvVars: env("ICMP_COUNT"), Usage: "echo requests per ICMP probe"},
				&cli.IntFlag{Name: "down-after", Value: def.Damping.DownAfter, EnvVars: env("DOWN_AFTER"), Usage: "failed polls in a row before a down event"},
				&cli.IntFlag{Name: "up-after", Value: def.Damping.UpAfter, EnvVars: env("UP_AFTER"), Usage: "good polls in a row before an up event"},
				&cli.IntFlag{Name: "flap-changes", Value: def.Damping.FlapChanges, EnvVars: env("FLAP_CHANGES"), Usage: "changes within --flap-window that make a check flapping (0 = off)"},
				&cli.DurationFlag{Name: "flap-window", Value: def.Damping.FlapWindow, EnvVars: env("FLAP_WINDOW"), Usage: "window for flap detection"},
				&cli.Int64Flag{Name: "spool-max-bytes", Value: 1 << 30, EnvVars: env("SPOOL_MAX_BYTES"), Usage: "largest spool kept while the peer is away (0 = the disk is the limit)"},
				&cli.IntFlag{Name: "batch", Value: def.BatchSize, EnvVars: env("BATCH"), Usage: "messages per publish batch"},
			},
			Action: pollerRun,
		}},
	}
}

func pollerRun(c *cli.Context) error {
	if err := applyConfig(c); err != nil {
		return err
	}
	if err := required(c, "MESHMON_POLLER_", "site", "data-dir"); err != nil {
		return err
	}
	log, err := newLogger(c, os.Stderr)
	if err != nil {
		return err
	}
	cfg := poller.DefaultConfig()
	cfg.Name = c.String("name")
	cfg.Site = c.String("site")
	cfg.Tenant = c.String("tenant")
	cfg.Workers = c.Int("workers")
	cfg.TrapListen = c.String("trap-listen")
	cfg.ICMPCount = c.Int("icmp-count")
	cfg.Damping.DownAfter = c.Int("down-after")
	cfg.Damping.UpAfter = c.Int("up-after")
	cfg.Damping.FlapChanges = c.Int("flap-changes")
	cfg.Damping.FlapWindow = c.Duration("flap-window")
	cfg.BatchSize = c.Int("batch")
	cfg.Version = version
	if cfg.ICMPMode, err = poller.ParseICMPMode(c.String("icmp-mode")); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	ccfg := connConfig(c, "meshmon-poller-"+cfg.Name)
	if err := ccfg.Validate(); err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runPoller(ctx, cfg, ccfg, c.String("data-dir"), c.Int64("spool-max-bytes"), log, nil)
}

// runPoller opens the poller's store, connects to the peer (retrying in the
// background: the poller works without it) and runs until ctx is done.
// started, if not nil, is called once the poller is ready.
func runPoller(ctx context.Context, cfg poller.Config, ccfg bus.ConnConfig, dataDir string, spoolMax int64, log *slog.Logger, started func(*poller.Poller)) error {
	path := filepath.Join(dataDir, "poller-"+cfg.Name+".db")
	store, err := storage.Open(path, storage.Options{MaxSpoolBytes: spoolMax})
	if err != nil {
		return err
	}
	defer store.Close()

	nc, err := bus.Connect(ccfg,
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("disconnected from peer", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("reconnected to peer", "url", nc.ConnectedUrlRedacted()) }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Debug("nats client", "subject", subject, "err", err)
		}),
	)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	p, err := poller.New(cfg, log, store, bus.NewPublisher(js), &lazyInventory{js: js}, &lazyRegistry{js: js})
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- p.Run(ctx) }()
	select {
	case err := <-errc:
		return err
	case <-p.Ready():
	}
	if started != nil {
		started(p)
	}
	return <-errc
}

// lazyInventory opens the inventory bucket on first use, so a poller can
// start while its peer is away.
type lazyInventory struct {
	js  jetstream.JetStream
	inv *bus.Inventory
}

func (l *lazyInventory) Watch(ctx context.Context) (<-chan meshmon.InventoryChange, error) {
	if l.inv == nil {
		inv, err := bus.OpenInventory(ctx, l.js)
		if err != nil {
			return nil, err
		}
		l.inv = inv
	}
	return l.inv.Watch(ctx)
}

// lazyRegistry opens the poller registry on first use.
type lazyRegistry struct {
	js  jetstream.JetStream
	reg *bus.Registry
}

func (l *lazyRegistry) Heartbeat(ctx context.Context, info meshmon.PollerInfo) error {
	if l.reg == nil {
		reg, err := bus.OpenRegistry(ctx, l.js)
		if err != nil {
			return err
		}
		l.reg = reg
	}
	return l.reg.Heartbeat(ctx, info)
}

// sanitizeName turns a host name into a valid poller name.
func sanitizeName(s string) string {
	out := make([]rune, 0, len(s))
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			out = append(out, r)
		case r == '.':
			return finishName(out)
		default:
			out = append(out, '-')
		}
	}
	return finishName(out)
}

func finishName(r []rune) string {
	s := strings.Trim(string(r), "-_")
	if len(s) > meshmon.MaxNameLen {
		s = s[:meshmon.MaxNameLen]
	}
	if s == "" {
		return "poller"
	}
	return s
}
