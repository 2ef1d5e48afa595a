package peer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// DefaultStartTimeout bounds Start when ctx has no deadline.
const DefaultStartTimeout = 30 * time.Second

// Peer is one embedded nats-server with JetStream. Start it once; Close
// stops it and may be called any number of times.
type Peer struct {
	cfg  Config
	log  *slog.Logger
	role role // resolved from cfg in New

	// What Start makes, and Close (or a failed Start) undoes.
	mu       sync.Mutex // guards srv, internal, lock and mon
	srv      *server.Server
	internal *internalAuth
	lock     *dirLock
	mon      *monitor
	certs    *certs // nil without TLS; set before Start returns

	ready        atomic.Bool
	closed       atomic.Bool
	closeOnce    sync.Once
	streamsReady chan struct{} // closed once the role's streams exist

	metricsOnce sync.Once
	metrics     *peerMetrics // the collector of Metrics, once called

	// now is the clock of the sourcing supervisors (watchSources,
	// keepAccount), which hand it to their pure decide functions.
	now func() time.Time
	// untapped: the keeper does not tap its source consumers (set by
	// tests of what it does without the tap, before Start).
	untapped bool

	// signer is the peer's own signing key for the tenant accounts it
	// acts in, made once (centralSigner).
	signerOnce sync.Once
	signer     *centralSigner
	signerErr  error
	// claims is a central peer's watch of its resolver in operator mode
	// (applyCentralClaims, keepCentralClaims).
	claims *claimsWatch

	// workerConns are the tenant workers' connections, by tenant
	// (TenantEvents reads over them).
	workerConns sync.Map
	// streams is the last look at every account's streams.
	streams streamsLook
	// tenantLooks counts superviseTenants' looks for tenants to run
	// workers for (tests wait on it).
	tenantLooks atomic.Int64

	// The peer's background work (see maintain and watchSources), until
	// Close.
	bg     context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
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
	// Streams are made with their final replicas from the start; scale
	// serves a cluster grown from fewer than three members.
	cfg.Limits.Replicas = max(cfg.Limits.Replicas, cfg.Replicas())
	bg, cancel := context.WithCancel(context.Background())
	p := &Peer{cfg: cfg, log: log, streamsReady: make(chan struct{}), now: time.Now, bg: bg, cancel: cancel}
	p.role = p.roleOf()
	return p, nil
}

// background runs f until the peer closes.
func (p *Peer) background(f func(context.Context)) {
	p.wg.Add(1)
	go func() { defer p.wg.Done(); f(p.bg) }()
}

// StoreDir is where the peer keeps JetStream's data.
func (c Config) StoreDir() string { return filepath.Join(c.DataDir, "jetstream") }

// Start locks the data dir, starts the server, waits until it accepts
// connections and JetStream answers, and ensures the streams and KV buckets.
// It returns an error wrapping ErrAddrInUse when the listen address is taken
// (as "listen 127.0.0.1:4222: address already in use"), ErrDataDirLocked
// when another peer runs on the data dir, ErrDataDir when the data dir is
// not a writable directory, and ErrNotReady when the server or JetStream
// fails, does not come up in time, or ctx is cancelled; in every case
// nothing keeps running. Start may be called only once.
//
// Every kind of peer goes through the same steps; where kinds differ,
// each step asks the peer's role (role.go).
func (p *Peer) Start(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultStartTimeout)
		defer cancel()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.srv != nil:
		return errors.New("start peer: already started")
	case p.closed.Load():
		return errors.New("start peer: closed")
	}
	for _, addr := range []string{p.cfg.Listen, p.cfg.httpAddr(), p.cfg.Cluster.Listen, p.cfg.LeafListen} {
		if err := checkFree(addr); err != nil {
			return err
		}
	}
	if err := p.claim(); err != nil {
		return p.abort(err)
	}
	if err := p.startServer(ctx); err != nil {
		return p.abort(err)
	}
	if err := p.startStreams(ctx); err != nil {
		return p.abort(fmt.Errorf("start peer: %w", err))
	}
	p.ready.Store(true)
	p.background(p.watchDisk)
	for _, f := range p.role.background {
		p.background(f)
	}
	msg, attrs := p.role.readyLog()
	p.log.Info(msg, append([]any{"name", p.cfg.Name, "role", p.cfg.Role, "domain", p.cfg.Domain(), "url", p.srv.ClientURL()}, attrs...)...)
	return nil
}

// claim takes what the server needs before it starts: the data dir,
// locked, with a writable store; the peer's own keys; what the role keeps
// in the data dir; the peer's certificate. It sets p.lock, p.internal and
// p.certs; after an error p.abort undoes it.
func (p *Peer) claim() error {
	var err error
	if p.lock, err = lockDataDir(p.cfg.DataDir); err != nil {
		return fmt.Errorf("start peer: %w", err)
	}
	if p.cfg.Name == "" {
		name, old, err := siteServerName(p.cfg.DataDir, p.cfg.Site, p.cfg.Cluster.Clustered())
		if err != nil {
			return fmt.Errorf("start peer: %w", err)
		}
		p.cfg.Name = name
		if old {
			p.log.Warn("this site peer keeps its site's name as its server name, as its cluster knows it: another site of the tenant can dial central under that name and keep this site's link off; give the site's peers names other sites cannot guess when you next rebuild the cluster (--name)", "name", name)
		}
	}
	if err := checkStoreDir(p.cfg.StoreDir()); err != nil {
		return fmt.Errorf("start peer: %w", err)
	}
	if p.internal, err = newInternalAuth(p.cfg.Auth); err != nil {
		return fmt.Errorf("start peer: %w", err)
	}
	if p.role.load != nil {
		p.role.load()
	}
	if p.cfg.TLS.On() {
		if p.certs, err = loadCerts(p.cfg.TLS); err != nil {
			return fmt.Errorf("start peer: %w", err)
		}
	}
	return nil
}

// startServer starts the server and waits until it accepts connections and
// JetStream runs, then the monitor. It sets p.srv and p.mon, and starts
// the certificate watch; after an error p.abort undoes it.
func (p *Peer) startServer(ctx context.Context) error {
	opts, err := p.serverOptions()
	if err != nil {
		return fmt.Errorf("start peer: %w", err)
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("start peer: %w", err)
	}
	logger := newServerLogger(p.log, p.cfg.DataDir)
	// nats-server debug lines (leaf, route and account detail) come
	// with the peer's debug level.
	srv.SetLoggerV2(logger, p.log.Enabled(context.Background(), slog.LevelDebug), false, false)
	if p.role.apply != nil {
		if err := p.role.apply(srv); err != nil {
			return fmt.Errorf("start peer: %w", err)
		}
	}
	srv.Start()
	p.srv = srv
	if p.cfg.Insecure {
		p.warnInsecure()
	}
	if p.certs != nil {
		p.background(p.watchTLS)
	}
	if err := waitReady(ctx, srv, logger.fatal); err != nil {
		// nats-server logs a bind error and never becomes ready; the
		// pre-check in Start catches the common case, this a race with it.
		if ferr := checkFree(p.cfg.Listen); ferr != nil {
			return ferr
		}
		return fmt.Errorf("start peer: %w", err)
	}
	if !srv.JetStreamEnabled() {
		return fmt.Errorf("start peer: %w: JetStream is not enabled (see the log)", ErrNotReady)
	}
	if p.cfg.HTTPListen != "" {
		if p.mon, err = p.cfg.startMonitor(srv, p.certs, p.log); err != nil {
			return fmt.Errorf("start peer: %w", err)
		}
	}
	return nil
}

// startStreams makes the role's streams on the running server: at once on
// a single peer; in the background on a cluster member, whose JetStream
// needs a quorum while the other members may not be up yet (with three
// replicas in a cluster of three or more, they come once three members are
// up).
func (p *Peer) startStreams(ctx context.Context) error {
	switch {
	case p.role.ensure == nil:
		// No streams of its own.
	case p.cfg.Cluster.Clustered():
		p.background(p.role.maintain) // closes streamsReady
		return nil
	default:
		if err := p.role.ensure(ctx); err != nil {
			return err
		}
	}
	close(p.streamsReady)
	return nil
}

// abort undoes a start that failed with err, and returns err: nothing of
// it keeps running, and the data dir is free again.
func (p *Peer) abort(err error) error {
	if p.srv != nil {
		p.cancel() // the background work started so far (watchTLS)
		p.mon.close()
		p.mon = nil
		p.srv.Shutdown()
		p.srv.WaitForShutdown()
	}
	p.lock.unlock()
	p.srv, p.internal, p.lock = nil, nil, nil
	return err
}

func deadline(ctx context.Context) time.Time {
	dl, _ := ctx.Deadline()
	return dl
}

// waitReady waits until srv accepts client connections. It returns at once
// when the server reports a fatal error (JetStream cannot use its store, a
// port cannot be bound), or when ctx is done (Ctrl-C), so a start that cannot
// succeed never hangs.
func waitReady(ctx context.Context, srv *server.Server, fatal <-chan string) error {
	for {
		if srv.ReadyForConnections(100 * time.Millisecond) {
			return nil
		}
		select {
		case msg := <-fatal:
			return fmt.Errorf("%w: %s", ErrNotReady, msg)
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%w: no client listener in time (see the log)", ErrNotReady)
			}
			return fmt.Errorf("%w: interrupted", ErrNotReady)
		default:
		}
	}
}

// checkStoreDir creates dir and proves that a file can be written and
// synced in it, so an unusable store fails at once with the OS's reason
// rather than deep inside JetStream.
func checkStoreDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("%w: %w", ErrDataDir, unwrapPathError(err))
	}
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return fmt.Errorf("%w: %w", ErrDataDir, unwrapPathError(err))
	}
	name := f.Name()
	_, werr := f.Write([]byte("meshmon"))
	if werr == nil {
		werr = f.Sync()
	}
	cerr := f.Close()
	_ = os.Remove(name)
	if werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("%w: write %s: %w", ErrDataDir, dir, werr)
	}
	return nil
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

// warnInsecure says at start what Insecure leaves open.
func (p *Peer) warnInsecure() {
	var open []string
	if !p.cfg.TLS.On() {
		open = append(open, "every listener is plaintext (credentials and events cross the network readable)")
		if p.cfg.Cluster.Clustered() {
			open = append(open, "the route port takes any server that dials it (it can join any account)")
		}
	}
	if p.cfg.Role == RoleSite && len(p.cfg.Central) > 0 && p.cfg.CentralCA == "" && !p.cfg.TLS.On() {
		open = append(open, "the link to central is plaintext and central is not verified")
	}
	if !p.cfg.clientAuth() && !isLoopback(p.cfg.Listen) {
		open = append(open, "clients need no credentials on "+p.cfg.Listen)
	}
	if p.cfg.HTTPListen != "" && p.cfg.HTTPPassword == "" {
		open = append(open, "the HTTP monitor answers anyone")
	}
	if len(open) == 0 {
		return
	}
	p.log.Warn("running with --insecure: "+strings.Join(open, "; "), "name", p.cfg.Name)
}

// ReloadTLS reads the peer's certificate and key files again: connections
// made from now on get the new certificate, those up stay up. A pair that
// does not load, or is not of the CA, is an error and the current one
// stays. It does nothing for a peer without TLS.
func (p *Peer) ReloadTLS() error {
	p.mu.Lock()
	k := p.certs
	p.mu.Unlock()
	if k == nil {
		return nil
	}
	if err := k.reload(); err != nil {
		return fmt.Errorf("reload tls: %w", err)
	}
	c := k.current().Leaf
	p.log.Info("tls certificate reloaded", "subject", c.Subject.CommonName, "not_after", c.NotAfter.UTC().Format(time.RFC3339), "serial", c.SerialNumber.Text(16))
	return nil
}

// watchTLS reloads the certificate files when they change, until ctx is
// done: what a renewal (certbot-like tooling, a secret mounted by an
// orchestrator) needs without a SIGHUP.
func (p *Peer) watchTLS(ctx context.Context) {
	every := p.cfg.TLS.watchEvery()
	if p.certs == nil || every < 0 {
		return
	}
	last := p.cfg.TLS.stamp()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := p.cfg.TLS.stamp()
		if now == last {
			continue
		}
		last = now
		if err := p.ReloadTLS(); err != nil {
			p.log.Error("certificate files changed; the certificate stays as it was", "err", err)
		}
	}
}

// ReloadOnSIGHUP makes a started peer reload its certificate files
// (ReloadTLS) on every SIGHUP until it closes: a rotation without downtime,
// as 'peer run' does. Without it a SIGHUP does to the process what it
// would (a peer without TLS ignores it with it).
func (p *Peer) ReloadOnSIGHUP() {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	p.background(func(ctx context.Context) {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if err := p.ReloadTLS(); err != nil {
					p.log.Error("SIGHUP: the certificate stays as it was", "err", err)
				}
			}
		}
	})
}

// HTTPAddr is where the monitor listens, host:port with the actual port;
// empty without one.
func (p *Peer) HTTPAddr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mon == nil {
		return ""
	}
	return p.mon.Addr()
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
// ErrNotStarted before Start or after Close, ErrOperatorMode in operator
// mode.
func (p *Peer) InProcessConn(opts ...nats.Option) (*nats.Conn, error) {
	return p.dialInProcess((*internalAuth).connOption, "meshmon-in-process", opts)
}

// dialInProcess connects to the peer in process as the user auth picks
// from the peer's own credentials; see InProcessConn for the errors.
func (p *Peer) dialInProcess(auth func(*internalAuth) nats.Option, name string, opts []nats.Option) (*nats.Conn, error) {
	p.mu.Lock()
	srv, in := p.srv, p.internal
	p.mu.Unlock()
	if srv == nil || !p.ready.Load() {
		return nil, ErrNotStarted
	}
	if p.cfg.operatorMode() {
		return nil, ErrOperatorMode
	}
	o := append([]nats.Option{nats.InProcessServer(srv), auth(in), nats.Name(name)}, opts...)
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
		p.cancel()
		p.wg.Wait()
		srv := p.Server()
		if srv == nil {
			return
		}
		p.mu.Lock()
		p.mon.close()
		p.mu.Unlock()
		srv.Shutdown()
		srv.WaitForShutdown()
		p.mu.Lock()
		p.lock.unlock()
		p.mu.Unlock()
		p.log.Info("peer stopped", "name", p.cfg.Name)
	})
}
