package peer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/bus"
)

// DefaultStartTimeout bounds Start when ctx has no deadline.
const DefaultStartTimeout = 30 * time.Second

// Peer is one embedded nats-server with JetStream. Start it once; Close
// stops it and may be called any number of times.
type Peer struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex // guards srv and internal
	srv      *server.Server
	internal *internalAuth

	ready     atomic.Bool
	closed    atomic.Bool
	closeOnce sync.Once
}

// New validates cfg and returns a peer that is not started yet. log may be
// nil to discard the server's log.
func New(cfg Config, log *slog.Logger) (*Peer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Peer{cfg: cfg, log: log}, nil
}

// StoreDir is where the peer keeps JetStream's data.
func (c Config) StoreDir() string { return filepath.Join(c.DataDir, "jetstream") }

// serverOptions builds the nats-server options of c.
func (c Config) serverOptions(in *internalAuth) *server.Options {
	host, port := hostPort(c.Listen)
	o := &server.Options{
		ServerName:         c.Name,
		Host:               host,
		Port:               port,
		JetStream:          true,
		JetStreamDomain:    c.Site,
		StoreDir:           c.StoreDir(),
		JetStreamMaxMemory: c.MaxMemory,
		JetStreamMaxStore:  c.MaxStore,
		SyncAlways:         c.SyncAlways,
		NoSigs:             true, // the process owns its signals
	}
	if c.HTTPListen != "" {
		o.HTTPHost, o.HTTPPort = hostPort(c.HTTPListen)
	}
	applyAuth(o, c.Auth, in)
	return o
}

// Start starts the server, waits until it accepts connections and
// JetStream answers, and ensures the streams and KV buckets. It returns an
// error wrapping ErrAddrInUse when the listen address is taken (as "listen
// 127.0.0.1:4222: address already in use"), and ErrNotReady when the server
// or JetStream does not come up in time; in both cases nothing keeps
// running. Start may be called only once.
func (p *Peer) Start(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultStartTimeout)
		defer cancel()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.srv != nil {
		return errors.New("start peer: already started")
	}
	if p.closed.Load() {
		return errors.New("start peer: closed")
	}
	for _, addr := range []string{p.cfg.Listen, p.cfg.HTTPListen} {
		if err := checkFree(addr); err != nil {
			return err
		}
	}
	in, err := newInternalAuth(p.cfg.Auth)
	if err != nil {
		return fmt.Errorf("start peer: %w", err)
	}
	srv, err := server.NewServer(p.cfg.serverOptions(in))
	if err != nil {
		return fmt.Errorf("start peer: %w", err)
	}
	srv.SetLoggerV2(serverLogger{p.log}, false, false, false)
	srv.Start()

	fail := func(err error) error {
		srv.Shutdown()
		srv.WaitForShutdown()
		return err
	}
	wait := time.Until(deadline(ctx))
	if !srv.ReadyForConnections(wait) {
		// nats-server logs a bind error and never becomes ready; the
		// pre-check above catches the common case, this a race with it.
		if err := checkFree(p.cfg.Listen); err != nil {
			return fail(err)
		}
		return fail(fmt.Errorf("start peer: %w: no client listener after %s", ErrNotReady, wait.Round(time.Millisecond)))
	}
	if !srv.JetStreamEnabled() {
		return fail(fmt.Errorf("start peer: %w: JetStream is not enabled (see the log)", ErrNotReady))
	}
	nc, err := nats.Connect("", nats.InProcessServer(srv), in.connOption(), nats.Name("meshmon-peer"))
	if err != nil {
		return fail(fmt.Errorf("start peer: in-process connection: %w", err))
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fail(fmt.Errorf("start peer: %w", err))
	}
	if err := waitJetStream(ctx, js); err != nil {
		return fail(err)
	}
	if err := bus.EnsureStreams(ctx, js, p.cfg.Limits); err != nil {
		return fail(fmt.Errorf("start peer: %w", err))
	}
	p.srv, p.internal = srv, in
	p.ready.Store(true)
	p.log.Info("peer ready", "name", p.cfg.Name, "site", p.cfg.Site, "url", srv.ClientURL(), "data_dir", p.cfg.DataDir)
	return nil
}

func deadline(ctx context.Context) time.Time {
	dl, _ := ctx.Deadline()
	return dl
}

// waitJetStream polls until JetStream answers an account info request.
func waitJetStream(ctx context.Context, js jetstream.JetStream) error {
	for {
		actx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := js.AccountInfo(actx)
		cancel()
		if err == nil {
			return nil
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("start peer: %w: JetStream did not answer: %w", ErrNotReady, err)
		case <-t.C:
		}
	}
}

// checkFree returns an error wrapping ErrAddrInUse if addr (host:port)
// cannot be bound. Port 0 and an empty addr are always free.
func checkFree(addr string) error {
	if addr == "" {
		return nil
	}
	if _, port := hostPort(addr); port == -1 {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("listen %s: %w", addr, ErrAddrInUse)
		}
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	return ln.Close()
}

// Ready reports whether Start succeeded and the server is still running.
func (p *Peer) Ready() bool {
	if !p.ready.Load() {
		return false
	}
	srv := p.Server()
	return srv != nil && srv.Running()
}

// ClientURL returns the URL clients connect to, with the actual port; it
// is empty before Start.
func (p *Peer) ClientURL() string {
	if srv := p.Server(); srv != nil {
		return srv.ClientURL()
	}
	return ""
}

// Server returns the embedded server, nil before Start. For tests.
func (p *Peer) Server() *server.Server {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.srv
}

// Config returns the peer's configuration.
func (p *Peer) Config() Config { return p.cfg }

// InProcessConn returns a new connection to the peer that does not go
// through the network and needs no credentials: the peer authenticates it
// with a key it generated at start. The caller closes it. It returns
// ErrNotStarted before Start or after Close.
func (p *Peer) InProcessConn(opts ...nats.Option) (*nats.Conn, error) {
	p.mu.Lock()
	srv, in := p.srv, p.internal
	p.mu.Unlock()
	if srv == nil || !p.ready.Load() {
		return nil, ErrNotStarted
	}
	o := append([]nats.Option{nats.InProcessServer(srv), in.connOption(), nats.Name("meshmon-in-process")}, opts...)
	nc, err := nats.Connect("", o...)
	if err != nil {
		return nil, fmt.Errorf("in-process connection: %w", err)
	}
	return nc, nil
}

// Close shuts the server down and waits until it has stopped. It is safe
// to call more than once, and before Start.
func (p *Peer) Close() {
	p.closeOnce.Do(func() {
		p.closed.Store(true)
		p.ready.Store(false)
		srv := p.Server()
		if srv == nil {
			return
		}
		srv.Shutdown()
		srv.WaitForShutdown()
		p.log.Info("peer stopped", "name", p.cfg.Name)
	})
}
