package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/meshmon/meshmon/internal/cliflags"
	"github.com/meshmon/meshmon/internal/demo"
)

func demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "all in one: a peer, a poller and simulated devices with faults; prints events",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "devices", Value: 20, Usage: "simulated devices"},
			&cli.DurationFlag{Name: "interval", Value: 2 * time.Second, Usage: "poll interval"},
			&cli.DurationFlag{Name: "faults-every", Value: 3 * time.Second, Usage: "inject a fault this often (0 = never)"},
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:4222", Usage: "peer client address; if taken, a free port is used"},
			&cli.StringFlag{Name: "data-dir", Usage: "keep the demo's data here (default: a temporary directory, removed at exit)"},
			&cli.DurationFlag{Name: "duration", Usage: "stop after this long", DefaultText: "run until Ctrl-C"},
			jsonFlag(),
		},
		Action: demoRun,
	}
}

func demoRun(c *cli.Context) error {
	peerProcs()
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if d := c.Duration("duration"); d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	log, err := newLogger(c, os.Stderr)
	if err != nil {
		return err
	}
	if c.String("log-level") == "info" && !c.IsSet("log-level") {
		log, _ = cliflags.Logger(os.Stderr, "warn", "text")
	}

	return demo.Run(ctx, demo.RunConfig{
		Config:      demo.Config{Dir: c.String("data-dir"), Listen: c.String("listen"), Devices: c.Int("devices"), Interval: c.Duration("interval"), Version: version, Log: log},
		FaultsEvery: c.Duration("faults-every"), JSON: c.Bool("json"), Out: os.Stdout, Info: os.Stderr,
	})
}
