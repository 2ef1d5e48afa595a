// Package demo runs meshmon's all-in-one demo ('meshmon demo'): a peer
// with TLS and a password, a poller in the same process with a trap
// listener, and simulated devices in the peer's inventory that send the
// poller their traps. The command wires flags to Config and prints.
package demo

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/bus/pollerlink"
	"github.com/meshmon/meshmon/peer"
	"github.com/meshmon/meshmon/pki"
	"github.com/meshmon/meshmon/poller"
	"github.com/meshmon/meshmon/sim"
)

// Config is what the demo runs.
type Config struct {
	Dir      string        // data directory: the peer's, the poller's, the TLS files
	Listen   string        // the peer's client address; a free port when it is taken
	Devices  int           // simulated devices
	Interval time.Duration // their poll interval
	Version  string        // the poller's version
	Topology string        // the devices' LLDP/CDP topology (sim.Config.Topology); none when empty
	Log      *slog.Logger
}

// Validate checks the demo's size: 1 to 10,000 devices, polled every
// second at most.
func (c Config) Validate() error {
	if c.Devices < 1 || c.Devices > 10000 {
		return fmt.Errorf("demo devices %d is out of range; use 1 to 10000", c.Devices)
	}
	if c.Interval < time.Second {
		return fmt.Errorf("demo interval %s is too short; use at least 1s", c.Interval)
	}
	return nil
}

// PollerName is the name of the demo's poller.
const PollerName = "demo-poller"

// Demo is a running demo.
type Demo struct {
	Peer   *peer.Peer
	Poller *poller.Poller
	Sim    *sim.Sim
	// JS is a connection to the peer, as Conn describes it.
	JS   jetstream.JetStream
	Conn bus.ConnConfig

	nc         *nats.Conn
	stopPoller func() error
}

// Start starts the demo's peer, its poller (ready when Start returns) and
// its simulated devices. On error what was started is stopped again.
func Start(ctx context.Context, cfg Config) (_ *Demo, err error) {
	d := &Demo{}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	if d.Peer, err = startPeer(ctx, cfg.Dir, cfg.Listen, cfg.Log); err != nil {
		return nil, err
	}
	pcfg := d.Peer.Config()
	d.Conn = bus.ConnConfig{URL: d.Peer.ClientURL(), User: "demo", Password: pcfg.Auth.Password, CAFile: pcfg.TLS.CA, Name: "meshmon-demo"}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	d.nc, err = bus.ConnectWait(cctx, d.Conn)
	cancel()
	if err != nil {
		return nil, err
	}
	if d.JS, err = jetstream.New(d.nc); err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	// The poller, in this process, with a trap listener for the simulator.
	pocfg := poller.DefaultConfig()
	pocfg.Name, pocfg.Site, pocfg.Version = PollerName, "demo", cfg.Version
	pocfg.TrapListen = "127.0.0.1:0"
	scfg := poller.ServiceConfig{Config: pocfg, DataDir: filepath.Join(cfg.Dir, "poller"), PeerWait: 10 * time.Second}
	if d.Poller, d.stopPoller, err = pollerlink.StartReady(ctx, scfg, d.Conn, cfg.Log); err != nil {
		return nil, err
	}
	if d.Sim, err = startSim(ctx, d.JS, d.Poller.TrapAddr().String(), cfg); err != nil {
		return nil, err
	}
	return d, nil
}

// Close stops what runs: the simulator, the poller, the connection and the
// peer.
func (d *Demo) Close() {
	if d.Sim != nil {
		d.Sim.Close()
	}
	if d.stopPoller != nil {
		_ = d.stopPoller()
	}
	if d.nc != nil {
		d.nc.Close()
	}
	if d.Peer != nil {
		d.Peer.Close()
	}
}

// RunFaults injects a random fault into the simulated devices every so
// often and reports each to report, until the returned stop is called or
// ctx is done; stop returns once the injecting has stopped.
func (d *Demo) RunFaults(ctx context.Context, every time.Duration, report func(what string, err error)) (stop func()) {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	var wg sync.WaitGroup
	fctx, fcancel := context.WithCancel(ctx)
	wg.Go(func() { d.Sim.RunFaults(fctx, every, rng, report) })
	return func() { fcancel(); wg.Wait() }
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

// startPeer starts the demo's peer, listening on listen or, if it is
// taken, a free port, with a password so the printed nats command shows
// how auth works, and TLS as everywhere: a CA of the demo's own and a
// certificate for loopback, in the data dir.
func startPeer(ctx context.Context, dir, listen string, log *slog.Logger) (*peer.Peer, error) {
	pcfg := peer.DefaultConfig()
	pcfg.Name, pcfg.Site, pcfg.DataDir = "demo-peer", "demo", filepath.Join(dir, "peer")
	pcfg.Listen = freeOr(listen)
	pcfg.Auth = peer.Auth{User: "demo", Password: randomToken()}
	files, err := pki.Loopback(filepath.Join(dir, "tls"), pcfg.Name, time.Now())
	if err != nil {
		return nil, fmt.Errorf("demo certificate: %w", err)
	}
	pcfg.TLS = peer.TLS{Cert: files.Cert, Key: files.Key, CA: files.CA}
	pcfg.Limits.EventsMaxBytes, pcfg.Limits.MetricsMaxBytes = 256<<20, 256<<20
	pe, err := peer.New(pcfg, log)
	if err != nil {
		return nil, err
	}
	if err := pe.Start(ctx); err != nil {
		return nil, err
	}
	return pe, nil
}

// startSim starts cfg.Devices simulated devices, sending their traps to
// trapTarget, and puts them in the inventory of js, polled every
// cfg.Interval.
func startSim(ctx context.Context, js jetstream.JetStream, trapTarget string, cfg Config) (*sim.Sim, error) {
	interval := cfg.Interval
	scfg := sim.DefaultConfig()
	scfg.Agents, scfg.NamePrefix, scfg.Topology = cfg.Devices, "dev", cfg.Topology
	scfg.TrapTarget = trapTarget
	scfg.DownFor = 3 * interval
	scfg.Logger = cfg.Log
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
			if _, err = inv.Put(ictx, a.Device(interval, 500*time.Millisecond, scfg.Community)); err != nil {
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
