package main

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/urfave/cli/v2"

	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/bus/pollerlink"
	"github.com/meshmon/meshmon/peer"
	"github.com/meshmon/meshmon/pki"
	"github.com/meshmon/meshmon/poller"
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
		Action: demo,
	}
}

func demo(c *cli.Context) error {
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

	pe, pcfg, err := demoPeer(ctx, dir, c.String("listen"), log)
	if err != nil {
		return err
	}
	defer pe.Close()
	password := pcfg.Auth.Password
	ccfg := bus.ConnConfig{URL: pe.ClientURL(), User: "demo", Password: password, CAFile: pcfg.TLS.CA, Name: "meshmon-demo"}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	nc, err := bus.ConnectWait(cctx, ccfg)
	cancel()
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}

	// The poller, in this process, with a trap listener for the simulator.
	pocfg := poller.DefaultConfig()
	pocfg.Name, pocfg.Site, pocfg.Version = "demo-poller", "demo", version
	pocfg.TrapListen = "127.0.0.1:0"
	po, stopPoller, err := pollerlink.StartReady(ctx, poller.ServiceConfig{Config: pocfg, DataDir: filepath.Join(dir, "poller"), PeerWait: 10 * time.Second}, ccfg, log)
	if ctx.Err() != nil {
		return nil
	}
	if err != nil {
		return err
	}
	defer stopPoller()

	sm, err := demoSim(ctx, js, po.TrapAddr().String(), n, interval, log)
	if err != nil {
		return err
	}
	defer sm.Close()

	asJSON := c.Bool("json")
	// With --json, stdout carries only events (one JSON object a line); the
	// banner and the summary go to stderr.
	info := os.Stdout
	if asJSON {
		info = os.Stderr
	}
	demoBanner(info, pe.ClientURL(), pcfg.TLS.CA, password, pocfg.Name, n, interval)

	if every := c.Duration("faults-every"); every > 0 {
		// Stopped before the deferred closes: the fault loop ends when the
		// demo does, even on error.
		defer demoFaults(ctx, sm, every, log, asJSON)()
	}

	err = bus.Tail(ctx, js, bus.TailOptions{Stream: bus.EventsStream, Subject: "ev.>", Live: true}, func(m bus.TailMsg) error {
		if asJSON {
			fmt.Printf("%s\n", m.Data)
		} else {
			fmt.Println(formatEvent(m.Subject, m.Data))
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

// randomToken returns 16 random hex characters.
func randomToken() string {
	b := make([]byte, 8)
	_, _ = crand.Read(b)
	return hex.EncodeToString(b)
}

// freeOr returns addr if it can be listened on, else the same host with a
// port the kernel picks.
func freeOr(addr string) string {
	l, err := net.Listen("tcp", addr)
	if err == nil {
		l.Close()
		return addr
	}
	host, _, serr := net.SplitHostPort(addr)
	if serr != nil || errors.Is(err, os.ErrPermission) {
		return addr
	}
	return net.JoinHostPort(host, "0")
}

// demoPeer starts the demo's peer, listening on listen or, if it is taken,
// a free port, with a password so the printed nats command shows how auth
// works, and TLS as everywhere: a CA of the demo's own and a certificate
// for loopback, in the data dir.
func demoPeer(ctx context.Context, dir, listen string, log *slog.Logger) (*peer.Peer, peer.Config, error) {
	pcfg := peer.DefaultConfig()
	pcfg.Name, pcfg.Site, pcfg.DataDir = "demo-peer", "demo", filepath.Join(dir, "peer")
	pcfg.Listen = freeOr(listen)
	pcfg.Auth = peer.Auth{User: "demo", Password: randomToken()}
	files, err := pki.Loopback(filepath.Join(dir, "tls"), pcfg.Name, time.Now())
	if err != nil {
		return nil, pcfg, fmt.Errorf("demo certificate: %w", err)
	}
	pcfg.TLS = peer.TLS{Cert: files.Cert, Key: files.Key, CA: files.CA}
	pcfg.Limits.EventsMaxBytes, pcfg.Limits.MetricsMaxBytes = 256<<20, 256<<20
	pe, err := peer.New(pcfg, log)
	if err != nil {
		return nil, pcfg, err
	}
	if err := pe.Start(ctx); err != nil {
		return nil, pcfg, err
	}
	return pe, pcfg, nil
}

// demoSim starts n simulated devices, sending their traps to trapTarget,
// and puts them in the inventory of js, polled every interval.
func demoSim(ctx context.Context, js jetstream.JetStream, trapTarget string, n int, interval time.Duration, log *slog.Logger) (*sim.Sim, error) {
	scfg := sim.DefaultConfig()
	scfg.Agents, scfg.NamePrefix = n, "dev"
	scfg.TrapTarget = trapTarget
	scfg.DownFor = 3 * interval
	scfg.Logger = log
	sm, err := sim.New(scfg)
	if err != nil {
		return nil, err
	}
	if err := sm.Start(ctx); err != nil {
		return nil, err
	}
	ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	inv, err := bus.OpenInventory(ictx, js)
	if err == nil {
		for _, a := range sm.Agents() {
			d := a.Device(interval, 500*time.Millisecond, scfg.Community)
			if _, err = inv.Put(ictx, d); err != nil {
				break
			}
		}
	}
	if err != nil {
		sm.Close()
		return nil, fmt.Errorf("add demo devices: %w", err)
	}
	return sm, nil
}

// demoFaults injects a fault into sm every so often, printing each unless
// asJSON, until the returned stop is called or ctx is done.
func demoFaults(ctx context.Context, sm *sim.Sim, every time.Duration, log *slog.Logger, asJSON bool) (stop func()) {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	var wg sync.WaitGroup
	fctx, fcancel := context.WithCancel(ctx)
	wg.Go(func() {
		sm.RunFaults(fctx, every, rng, func(what string, err error) {
			if err != nil {
				log.Warn("inject fault", "err", err)
			} else if !asJSON {
				fmt.Printf("%s  fault injected: %s\n", time.Now().Format("15:04:05.000"), what)
			}
		})
	})
	return func() { fcancel(); wg.Wait() }
}

// demoBanner says what runs and how to watch its events.
func demoBanner(w io.Writer, url, ca, password, pollerName string, n int, interval time.Duration) {
	fmt.Fprintf(w, "meshmon demo: peer %s, poller %s, %d simulated devices polled every %s\n", url, pollerName, n, interval)
	fmt.Fprintf(w, "watch the same events with the stock nats CLI (TLS, verified against the demo's CA):\n  nats --server %s --tlsca %s --user demo --password %s sub 'ev.>'\n", url, ca, password)
	fmt.Fprintf(w, "or with meshmon:\n  meshmon --server %s --tlsca %s --user demo --password %s events tail --since 1h\n\n", url, ca, password)
}
