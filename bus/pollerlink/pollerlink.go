// Package pollerlink connects a poller to its site peer over NATS: the
// connection a poller keeps and the adapters of package bus that
// poller.Service takes (poller.Link). The poller itself imports nothing of
// the transport; this package is where the two meet.
package pollerlink

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/poller"
)

// Conn is a poller's connection to its site peer. It connects in the
// background and reconnects forever: a poller works without its peer.
type Conn struct {
	nc        *nats.Conn
	js        jetstream.JetStream
	log       *slog.Logger
	url       string
	connected chan struct{}
	once      sync.Once
}

// Connect connects to the peer with cfg (see bus.Connect): it returns at
// once, whether the peer answers or not.
func Connect(cfg bus.ConnConfig, log *slog.Logger) (*Conn, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Conn{log: log, url: cfg.URL, connected: make(chan struct{})}
	nc, err := bus.Connect(cfg,
		// No buffering while reconnecting: a publish then fails at once and
		// its messages stay in the spool, where the drainer re-sends them
		// in order (after checking, in a group, that they are still this
		// poller's); a buffered copy would arrive whenever it arrives.
		nats.ReconnectBufSize(-1),
		nats.ConnectHandler(func(*nats.Conn) { c.markConnected() }),
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
		return nil, err
	}
	if nc.IsConnected() {
		c.markConnected()
	}
	if c.js, err = jetstream.New(nc); err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	c.nc = nc
	return c, nil
}

func (c *Conn) markConnected() { c.once.Do(func() { close(c.connected) }) }

// Link is what poller.Service takes of the peer: the site check, the
// publisher, the inventory and the registry (opened when first used, so
// the poller starts while its peer is away), its group seat, and the
// site's on-demand tasks.
func (c *Conn) Link() poller.Link {
	return poller.Link{
		Peer:      c.url,
		Connected: c.connected,
		Sites:     siteChecker{c.js},
		Publisher: bus.NewPublisher(c.js),
		Inventory: &lazyInventory{js: c.js},
		Registry:  &lazyRegistry{js: c.js},
		Tasks:     taskServer{bus.NewTaskServer(c.nc, poller.TaskCode, c.log)},
		NewGroup: func(s poller.GroupSeat) (poller.GroupMember, error) {
			g, err := bus.NewGroup(c.js, GroupConfig(s), c.log)
			if err != nil {
				return nil, err
			}
			return g, nil
		},
	}
}

// Close closes the connection.
func (c *Conn) Close() { c.nc.Close() }

// GroupConfig is the poller group configuration of a poller's seat: a
// member is probed (bus.GroupConfig.Probe) once its heartbeats are
// poller.GroupSeat.ProbeAfter late.
func GroupConfig(s poller.GroupSeat) bus.GroupConfig {
	tick := min(100*time.Millisecond, s.MemberTimeout/4)
	probe := s.ProbeAfter()
	if probe != 0 {
		probe = max(probe, tick)
	}
	return bus.GroupConfig{Name: s.Name, Instance: s.Instance, Site: s.Site, Lease: s.Lease,
		MemberTimeout: s.MemberTimeout, Tick: tick, Probe: probe}
}

// taskServer serves a poller's tasks with bus.TaskServer.
type taskServer struct{ s *bus.TaskServer }

func (t taskServer) Serve(ctx context.Context, site, name string, h poller.TaskHandler) error {
	return t.s.Serve(ctx, site, name, h)
}

type siteChecker struct{ js jetstream.JetStream }

func (s siteChecker) CheckSite(ctx context.Context, site string) error {
	return bus.CheckSite(ctx, s.js, site)
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
	js      jetstream.JetStream
	mu      sync.Mutex // guards reg: Claim and the heartbeat may race
	reg     *bus.Registry
	claimed atomic.Bool
}

func (l *lazyRegistry) Heartbeat(ctx context.Context, info meshmon.PollerInfo) error {
	if !l.claimed.Load() {
		// Until the name is ours a heartbeat could overwrite another
		// poller's.
		return errors.New("heartbeat: the poller name is not claimed yet")
	}
	reg, err := l.open(ctx)
	if err != nil {
		return err
	}
	return reg.Heartbeat(ctx, info)
}

// Claim takes the poller's name: see bus.Registry.Claim.
func (l *lazyRegistry) Claim(ctx context.Context, info meshmon.PollerInfo) error {
	reg, err := l.open(ctx)
	if err != nil {
		return err
	}
	if err := reg.Claim(ctx, info); err != nil {
		return err
	}
	l.claimed.Store(true)
	return nil
}

// Leave removes the poller's heartbeat: see bus.Registry.Leave.
func (l *lazyRegistry) Leave(ctx context.Context, site, name, instance string) error {
	if !l.claimed.Load() {
		return nil
	}
	reg, err := l.open(ctx)
	if err != nil {
		return err
	}
	return reg.Leave(ctx, site, name, instance)
}

func (l *lazyRegistry) open(ctx context.Context) (*bus.Registry, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.reg == nil {
		reg, err := bus.OpenRegistry(ctx, l.js)
		if err != nil {
			return nil, err
		}
		l.reg = reg
	}
	return l.reg, nil
}

// Start connects to the peer with ccfg and starts a poller service of cfg
// over that connection (see poller.Service.Start). stop closes the service,
// then the connection, and returns why the service stopped.
func Start(ctx context.Context, cfg poller.ServiceConfig, ccfg bus.ConnConfig, log *slog.Logger) (svc *poller.Service, stop func() error, err error) {
	conn, err := Connect(ccfg, log)
	if err != nil {
		return nil, nil, err
	}
	if svc, err = poller.NewService(cfg, conn.Link(), log); err == nil {
		err = svc.Start(ctx)
	}
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	return svc, func() error { defer conn.Close(); return svc.Close() }, nil
}

// StartReady is Start, then waits until the poller is ready (see
// poller.Service.Ready); stop stops it. If the poller stops first, or ctx
// ends, StartReady fails with why.
func StartReady(ctx context.Context, cfg poller.ServiceConfig, ccfg bus.ConnConfig, log *slog.Logger) (*poller.Poller, func() error, error) {
	svc, stop, err := Start(ctx, cfg, ccfg, log)
	if err != nil {
		return nil, nil, err
	}
	select {
	case <-svc.Ready():
		return svc.Poller(), stop, nil
	case <-svc.Done():
	case <-ctx.Done():
	}
	err = stop()
	if err == nil {
		err = cmp.Or(ctx.Err(), errors.New("the poller stopped before it was ready"))
	}
	return nil, nil, err
}
