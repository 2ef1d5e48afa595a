package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/demo"
	"github.com/meshmon/meshmon/sim"
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
	n, interval := c.Int("devices"), c.Duration("interval")
	if n < 1 || n > 10000 {
		return fmt.Errorf("--devices %d is out of range; use 1 to 10000", n)
	}
	if interval < time.Second {
		return fmt.Errorf("--interval %s is too short; use at least 1s", interval)
	}
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
		log, _ = newLoggerLevel(os.Stderr, "warn")
	}

	dir := c.String("data-dir")
	if dir == "" {
		if dir, err = os.MkdirTemp("", "meshmon-demo-"); err != nil {
			return fmt.Errorf("demo data dir: %w", err)
		}
		defer os.RemoveAll(dir)
	}

	topology := sim.TopologyNone
	if n >= 2 {
		topology = sim.TopologyTree // for `meshmon topology --site demo`
	}
	d, err := demo.Start(ctx, demo.Config{Dir: dir, Listen: c.String("listen"), Devices: n, Interval: interval, Version: version,
		Topology: topology, Log: log})
	if err != nil && ctx.Err() != nil {
		return nil
	}
	if err != nil {
		return err
	}
	defer d.Close()
	js, po := d.JS, d.Poller

	asJSON := c.Bool("json")
	// With --json, stdout carries only events (one JSON object a line); the
	// banner and the summary go to stderr.
	info := os.Stdout
	if asJSON {
		info = os.Stderr
	}
	demoBanner(info, d.Conn.URL, d.Conn.CAFile, d.Conn.Password, demo.PollerName, n, interval)

	if every := c.Duration("faults-every"); every > 0 {
		// Stopped before the deferred closes: the fault loop ends when the
		// demo does, even on error.
		defer d.RunFaults(ctx, every, func(what string, err error) {
			if err != nil {
				log.Warn("inject fault", "err", err)
			} else if !asJSON {
				fmt.Printf("%s  fault injected: %s\n", time.Now().Format("15:04:05.000"), what)
			}
		})()
	}

	err = bus.Tail(ctx, js, bus.TailOptions{Stream: bus.EventsStream, Subject: "ev.>", Live: true}, func(m bus.TailMsg) error {
		if asJSON {
			fmt.Printf("%s\n", m.Data)
		} else {
			fmt.Println(meshmon.FormatEvent(m.Subject, m.Data))
		}
		return nil
	})
	if ctx.Err() != nil {
		st := po.Stats()
		fmt.Fprintf(info, "\ndemo stopped: %d polls, %d messages published, %d spooled, %d dropped\n", st.Polls, st.Published, st.Spooled, st.Dropped)
		return nil
	}
	return err
}

// demoBanner says what runs and how to watch its events.
func demoBanner(w io.Writer, url, ca, password, pollerName string, n int, interval time.Duration) {
	fmt.Fprintf(w, "meshmon demo: peer %s, poller %s, %d simulated devices polled every %s\n", url, pollerName, n, interval)
	fmt.Fprintf(w, "watch the same events with the stock nats CLI (TLS, verified against the demo's CA):\n  nats --server %s --tlsca %s --user demo --password %s sub 'ev.>'\n", url, ca, password)
	fmt.Fprintf(w, "or with meshmon:\n  meshmon --server %s --tlsca %s --user demo --password %s events tail --since 1h\n\n", url, ca, password)
}
