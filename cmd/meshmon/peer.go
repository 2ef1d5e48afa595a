package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/peer"
)

func peerCommand() *cli.Command {
	def := peer.DefaultConfig()
	lim := bus.DefaultStreamLimits()
	env := func(n string) []string { return []string{"MESHMON_PEER_" + n} }
	return &cli.Command{
		Name:  "peer",
		Usage: "run a peer: an embedded NATS server with JetStream",
		Subcommands: []*cli.Command{{
			Name:  "run",
			Usage: "run a site peer until SIGINT or SIGTERM",
			Flags: []cli.Flag{
				configFlag(),
				&cli.StringFlag{Name: "name", EnvVars: env("NAME"), Usage: "server name, unique in the mesh (default: the site name)"},
				&cli.StringFlag{Name: "site", EnvVars: env("SITE"), Usage: "site name; also the JetStream domain"},
				&cli.StringFlag{Name: "listen", Value: def.Listen, EnvVars: env("LISTEN"), Usage: "client address host:port (port 0 picks one)"},
				&cli.StringFlag{Name: "data-dir", EnvVars: env("DATA_DIR"), Usage: "where JetStream keeps its files"},
				&cli.BoolFlag{Name: "sync-always", Value: def.SyncAlways, EnvVars: env("SYNC_ALWAYS"), Usage: "fsync every write (set false to fsync every 2 minutes: faster, may lose acknowledged writes on power loss)"},
				&cli.StringFlag{Name: "auth-user", EnvVars: env("AUTH_USER"), Usage: "require this user name from clients"},
				&cli.StringFlag{Name: "auth-password", EnvVars: env("AUTH_PASSWORD"), Usage: "password for --auth-user"},
				&cli.StringFlag{Name: "auth-nkey", EnvVars: env("AUTH_NKEY"), Usage: "require this user nkey (public key, U...) from clients"},
				ageFlag("events-max-age", lim.EventsMaxAge, env("EVENTS_MAX_AGE"), "how long EVENTS keeps events"),
				sizeFlag("events-max-bytes", lim.EventsMaxBytes, env("EVENTS_MAX_BYTES"), "EVENTS size limit"),
				ageFlag("metrics-max-age", lim.MetricsMaxAge, env("METRICS_MAX_AGE"), "how long METRICS keeps samples"),
				sizeFlag("metrics-max-bytes", lim.MetricsMaxBytes, env("METRICS_MAX_BYTES"), "METRICS size limit"),
				ageFlag("events-dedup-window", lim.EventsDuplicates, env("EVENTS_DEDUP_WINDOW"), "EVENTS duplicate window (message ids)"),
				ageFlag("metrics-dedup-window", lim.MetricsDuplicates, env("METRICS_DEDUP_WINDOW"), "METRICS duplicate window"),
				&cli.StringFlag{Name: "http", EnvVars: env("HTTP"), Usage: "NATS monitoring address host:port (off when empty)"},
				jsonFlag(),
			},
			Action: peerRun,
		}},
	}
}

func peerRun(c *cli.Context) error {
	if err := applyConfig(c); err != nil {
		return err
	}
	if err := required(c, "MESHMON_PEER_", "site", "data-dir"); err != nil {
		return err
	}
	log, err := newLogger(c, os.Stderr)
	if err != nil {
		return err
	}
	cfg := peer.DefaultConfig()
	cfg.Site = c.String("site")
	cfg.Name = c.String("name")
	if cfg.Name == "" {
		cfg.Name = cfg.Site
	}
	cfg.Listen = c.String("listen")
	cfg.DataDir = c.String("data-dir")
	cfg.SyncAlways = c.Bool("sync-always")
	cfg.Auth = peer.Auth{User: c.String("auth-user"), Password: c.String("auth-password"), NKey: c.String("auth-nkey")}
	cfg.HTTPListen = c.String("http")
	cfg.Limits.EventsMaxAge = ageOf(c, "events-max-age")
	cfg.Limits.EventsMaxBytes = sizeOf(c, "events-max-bytes")
	cfg.Limits.MetricsMaxAge = ageOf(c, "metrics-max-age")
	cfg.Limits.MetricsMaxBytes = sizeOf(c, "metrics-max-bytes")
	cfg.Limits.EventsDuplicates = ageOf(c, "events-dedup-window")
	cfg.Limits.MetricsDuplicates = ageOf(c, "metrics-dedup-window")

	p, err := peer.New(cfg, log)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := p.Start(ctx); err != nil {
		return err
	}
	defer p.Close()
	if cfg.Auth == (peer.Auth{}) {
		log.Warn("no client authentication configured: anyone who reaches the listen address can read and write; set --auth-user/--auth-password or --auth-nkey")
	}
	log.Info("peer ready", "site", cfg.Site, "url", p.ClientURL(), "data_dir", cfg.DataDir, "sync_always", cfg.SyncAlways)
	if c.Bool("json") {
		if err := printJSON(os.Stdout, map[string]string{"name": cfg.Name, "site": cfg.Site, "url": p.ClientURL(), "data_dir": cfg.DataDir}); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(os.Stdout, "peer %s ready on %s\n", cfg.Name, p.ClientURL())
	}
	<-ctx.Done()
	log.Info("shutting down")
	return nil
}
