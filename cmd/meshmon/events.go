package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/urfave/cli/v2"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/tenancy"
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

// tailAllTenants tails every tenant's EVENTS stream at central, each over a
// connection of its own as a reader of that tenant signed from the key
// store: the streams, not the ops account's imports, so that a replay and
// the catch-up after an outage miss nothing.
func tailAllTenants(ctx context.Context, c *cli.Context, opts bus.TailOptions, asJSON bool) error {
	st, err := tenancy.Open(c.String("keys"))
	if err != nil {
		return err
	}
	ts, err := st.Tenants()
	if err != nil {
		return err
	}
	if len(ts) == 0 {
		return errors.New("the key store has no tenants; 'meshmon tenant create NAME' creates one")
	}
	type line struct {
		tenant string
		m      bus.TailMsg
	}
	lines := make(chan line, 1024)
	errs := make(chan error, len(ts))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for _, t := range ts {
		creds, err := st.ReaderCreds(t.Name, 24*time.Hour)
		if err != nil {
			return err
		}
		nc, err := connectAs(c, creds, "meshmon-tail-"+t.Name)
		if err != nil {
			return fmt.Errorf("tenant %s: %w", t.Name, err)
		}
		defer nc.Close()
		js, err := jetstream.NewWithDomain(nc, bus.HubDomain)
		if err != nil {
			return err
		}
		wg.Go(func() {
			err := bus.Tail(ctx, js, opts, func(m bus.TailMsg) error {
				select {
				case lines <- line{t.Name, m}:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			})
			if err != nil && ctx.Err() == nil {
				errs <- fmt.Errorf("tenant %s: %w", t.Name, err)
				cancel()
			}
		})
	}
	go func() { wg.Wait(); close(lines) }()
	for l := range lines {
		if asJSON {
			ev := json.RawMessage(l.m.Data)
			if !json.Valid(l.m.Data) {
				ev, _ = json.Marshal(string(l.m.Data))
			}
			if err := printJSONLine(os.Stdout, map[string]any{"tenant": l.tenant, "subject": l.m.Subject, "seq": l.m.Seq, "event": ev}); err != nil {
				return err
			}
			continue
		}
		fmt.Printf("%-12s %s\n", l.tenant, formatEvent(l.m.Subject, l.m.Data))
	}
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

func printJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
