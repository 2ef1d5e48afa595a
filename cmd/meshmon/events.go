package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/urfave/cli/v2"

	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/cliflags"
	"github.com/meshmon/meshmon/tenancy"
	"github.com/meshmon/meshmon/tenancy/provision"
)

func eventsCommand() *cli.Command {
	return &cli.Command{
		Name:  "events",
		Usage: "read events",
		Subcommands: []*cli.Command{{
			Name:  "tail",
			Usage: "print events as they arrive; with --since, replay history first",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "since", Usage: "replay from this far back (15m, 2h) or from an RFC 3339 time"},
				&cli.Uint64Flag{Name: "seq", Usage: "replay from this stream sequence"},
				&cli.StringFlag{Name: "site", Usage: "only this site"},
				&cli.StringFlag{Name: "device", Usage: "only this device"},
				&cli.StringFlag{Name: "kind", Usage: "only this kind (node_down, if_up, trap, ...)"},
				&cli.BoolFlag{Name: "no-follow", Usage: "stop after the replay instead of waiting for new events"},
				&cli.BoolFlag{Name: "all-tenants", Usage: "central in operator mode: every tenant's events, read from each tenant's stream (needs --keys; for up to 24h)"},
				keysFlag(),
				jsonFlag(),
			},
			Action: eventsTail,
		}},
	}
}

func eventsTail(c *cli.Context) error {
	since, err := cliflags.Since(c.String("since"), time.Now())
	if err != nil {
		return err
	}
	if c.IsSet("since") && c.IsSet("seq") {
		return errors.New("--since and --seq both say where to start; give one")
	}
	filter, err := bus.CheckedEventFilter(c.String("site"), c.String("device"), c.String("kind"))
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	asJSON := c.Bool("json")
	opts := bus.TailOptions{
		Stream:   bus.EventsStream,
		Subject:  filter,
		Since:    since,
		StartSeq: c.Uint64("seq"),
		Live:     !c.Bool("no-follow"),
	}
	if c.Bool("all-tenants") {
		if c.IsSet("seq") {
			return errors.New("--seq is a position in one stream; with --all-tenants use --since")
		}
		return tailAllTenants(ctx, c, opts, asJSON)
	}
	cl, err := connect(c)
	if err != nil {
		return err
	}
	defer cl.Close()
	err = bus.Tail(ctx, cl.js, opts, func(m bus.TailMsg) error {
		if !showable("", m) {
			return nil
		}
		return bus.WriteEvent(os.Stdout, m, asJSON)
	})
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// tailAllTenants tails every tenant's EVENTS stream at central
// (provision.TailTenants), each as a reader of that tenant signed from the
// key store, and prints the events with their tenant.
func tailAllTenants(ctx context.Context, c *cli.Context, opts bus.TailOptions, asJSON bool) error {
	st, err := tenancy.Open(c.String("keys"))
	if err != nil {
		return err
	}
	dial := func(tenant string, creds []byte) (*nats.Conn, error) {
		return connectAs(c, creds, "meshmon-tail-"+tenant)
	}
	return provision.TailTenants(ctx, st, dial, opts, func(tenant string, m bus.TailMsg) error {
		if !showable(tenant, m) {
			return nil
		}
		return provision.WriteTenantEvent(os.Stdout, tenant, m, asJSON)
	})
}

// showable reports whether events tail shows m (bus.ShowableEvent): an
// event that another site's link delivered on a site's subject, or whose
// body says another site, device or kind than its subject, is left out,
// and said so on stderr.
func showable(tenant string, m bus.TailMsg) bool {
	err := bus.ShowableEvent(m.Subject, m.Header, m.Data)
	if err == nil {
		return true
	}
	if tenant != "" {
		tenant = "tenant " + tenant + ", "
	}
	fmt.Fprintf(os.Stderr, "meshmon: %sevent %d not shown: %v\n", tenant, m.Seq, err)
	return false
}
