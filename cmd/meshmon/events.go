package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
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
				jsonFlag(),
			},
			Action: eventsTail,
		}},
	}
}

func eventsTail(c *cli.Context) error {
	since, err := parseSince(c.String("since"), time.Now())
	if err != nil {
		return err
	}
	if c.IsSet("since") && c.IsSet("seq") {
		return errors.New("--since and --seq both say where to start; give one")
	}
	if k := c.String("kind"); k != "" && !slices.Contains(meshmon.Kinds, k) {
		return fmt.Errorf("--kind %q: not an event kind; kinds are %s", k, strings.Join(meshmon.Kinds, ", "))
	}
	for _, f := range []string{"site", "device", "kind"} {
		if v := c.String(f); v != "" {
			if err := meshmon.ValidateName(f, v); err != nil {
				return fmt.Errorf("--%s: %w", f, err)
			}
		}
	}
	cl, err := connect(c)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	asJSON := c.Bool("json")
	opts := bus.TailOptions{
		Stream:   bus.EventsStream,
		Subject:  bus.EventFilter(c.String("site"), c.String("device"), c.String("kind")),
		Since:    since,
		StartSeq: c.Uint64("seq"),
		Live:     !c.Bool("no-follow"),
	}
	err = bus.Tail(ctx, cl.js, opts, func(m bus.TailMsg) error {
		if asJSON {
			_, err := fmt.Fprintf(os.Stdout, "%s\n", m.Data)
			return err
		}
		fmt.Println(formatEvent(m.Subject, m.Data))
		return nil
	})
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// formatEvent renders an event for people: time, site/device, kind,
// severity, message.
func formatEvent(subject string, data []byte) string {
	var ev meshmon.Event
	if err := json.Unmarshal(data, &ev); err != nil || ev.Data.Kind == "" {
		return fmt.Sprintf("%s  %s", subject, data)
	}
	return fmt.Sprintf("%s  %-24s %-17s %-8s %s",
		ev.Time.Local().Format("15:04:05.000"), ev.Data.Site+"/"+ev.Data.Device, ev.Data.Kind, ev.Data.Severity, ev.Data.Message)
}
