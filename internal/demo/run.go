package demo

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/sim"
)

// RunConfig is what Run runs and where it prints.
type RunConfig struct {
	Config                    // Dir empty: a temporary directory, removed at the end
	FaultsEvery time.Duration // inject a random fault this often (0: never)
	// JSON: Out carries only the events, one JSON object a line; the
	// banner, the faults' log and the summary go to Info.
	JSON      bool
	Out, Info io.Writer
}

// Run starts the demo and prints its events to Out until ctx is done; a
// demo that ctx stopped while it started is no error.
func Run(ctx context.Context, cfg RunConfig) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if cfg.Dir == "" {
		dir, err := os.MkdirTemp("", "meshmon-demo-")
		if err != nil {
			return fmt.Errorf("demo data dir: %w", err)
		}
		defer os.RemoveAll(dir)
		cfg.Dir = dir
	}
	if cfg.Devices >= 2 {
		cfg.Topology = sim.TopologyTree // for `meshmon topology --site demo`
	}
	d, err := Start(ctx, cfg.Config)
	if err != nil && ctx.Err() != nil {
		return nil
	}
	if err != nil {
		return err
	}
	defer d.Close()
	info := cfg.Out
	if cfg.JSON {
		info = cfg.Info
	}
	writeBanner(info, d.Conn, cfg.Devices, cfg.Interval)
	if cfg.FaultsEvery > 0 {
		// Stopped before the deferred close: the fault loop ends when the
		// demo does, even on error.
		defer d.RunFaults(ctx, cfg.FaultsEvery, faultReport(cfg, logOf(cfg.Log)))()
	}
	err = bus.Tail(ctx, d.JS, bus.TailOptions{Stream: bus.EventsStream, Subject: "ev.>", Live: true}, func(m bus.TailMsg) error {
		return bus.WriteEvent(cfg.Out, m, cfg.JSON)
	})
	if ctx.Err() != nil {
		st := d.Poller.Stats()
		fmt.Fprintf(info, "\ndemo stopped: %d polls, %d messages published, %d spooled, %d dropped\n", st.Polls, st.Published, st.Spooled, st.Dropped)
		return nil
	}
	return err
}

// faultReport prints each injected fault (not with JSON) and logs a
// failed one.
func faultReport(cfg RunConfig, log *slog.Logger) func(string, error) {
	return func(what string, err error) {
		if err != nil {
			log.Warn("inject fault", "err", err)
		} else if !cfg.JSON {
			fmt.Fprintf(cfg.Out, "%s  fault injected: %s\n", time.Now().Format("15:04:05.000"), what)
		}
	}
}

func logOf(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// writeBanner says what runs and how to watch its events.
func writeBanner(w io.Writer, conn bus.ConnConfig, n int, interval time.Duration) {
	url, ca, password := conn.URL, conn.CAFile, conn.Password
	fmt.Fprintf(w, "meshmon demo: peer %s, poller %s, %d simulated devices polled every %s\n", url, PollerName, n, interval)
	fmt.Fprintf(w, "watch the same events with the stock nats CLI (TLS, verified against the demo's CA):\n  nats --server %s --tlsca %s --user demo --password %s sub 'ev.>'\n", url, ca, password)
	fmt.Fprintf(w, "or with meshmon:\n  meshmon --server %s --tlsca %s --user demo --password %s events tail --since 1h\n\n", url, ca, password)
}
