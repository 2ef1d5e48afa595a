package poller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/internal/backoff"
	"github.com/meshmon/meshmon/storage"
)

// SiteChecker proves that the peer serves a site: CheckSite fails unless
// the peer it reaches is the site's.
type SiteChecker interface {
	CheckSite(ctx context.Context, site string) error
}

// Claimer is a Registry in which a poller first claims its name: Claim
// fails if another running poller holds it. A Claimer may also have
// Leave(ctx, site, name, instance string) error, which a poller calls on
// its way out so that its group gives its devices to the others at once.
type Claimer interface {
	Registry
	Claim(ctx context.Context, info meshmon.PollerInfo) error
}

// GroupSeat is what a poller brings to its site's group: who it is and the
// group's timings (Config.GroupLease, Config.MemberTimeout and
// Config.HeartbeatEvery).
type GroupSeat struct {
	Name, Instance, Site            string
	Lease, MemberTimeout, Heartbeat time.Duration
}

// ProbeAfter is how late the seat's heartbeats may be before the group
// asks whether its connection is still up, and takes it for dead at once
// when it is not: two heartbeats, at most half the member timeout; 0
// (no probes, only the member timeout) without a heartbeat interval. A
// probe of a live member costs one request and moves nothing, so it
// comes early: with three heartbeats a killed leader's lease was taken
// 240 to 300 ms after the kill (issue 23).
func (s GroupSeat) ProbeAfter() time.Duration {
	if s.Heartbeat <= 0 {
		return 0
	}
	return min(2*s.Heartbeat, s.MemberTimeout/2)
}

// Seat is the poller's seat in its site's group.
func (c Config) Seat() GroupSeat {
	return GroupSeat{Name: c.Name, Instance: c.Instance, Site: c.Site, Lease: c.GroupLease, MemberTimeout: c.MemberTimeout, Heartbeat: c.HeartbeatEvery}
}

// GroupMember is a seat in a poller group: the Group a poller follows and
// the work of taking part in it, which Run does until ctx is done.
type GroupMember interface {
	Group
	Run(ctx context.Context)
}

// Link is what a Service needs of its site peer. The transport provides
// it (package bus/pollerlink over NATS); every part but NewGroup is needed.
type Link struct {
	Peer string // the peer's address, for logs
	// Connected is closed once the connection to the peer is first up.
	Connected <-chan struct{}
	Sites     SiteChecker
	Publisher Publisher
	Inventory Inventory
	Registry  Claimer
	// NewGroup makes the poller's seat in its site's group; without it
	// the poller polls every device of its site.
	NewGroup func(GroupSeat) (GroupMember, error)
	// Tasks serves the site's on-demand tasks (optional): the poller
	// answers them once its identity is proven.
	Tasks TaskServer
}

// ServiceConfig is how a Service runs: the poller's Config, where it keeps
// its store, and how long it waits for its peer before it starts without.
type ServiceConfig struct {
	Config
	DataDir       string // the poller's store is DataDir/poller-NAME.db
	SpoolMaxBytes int64  // largest spool kept while the peer is away; 0: the disk is the limit
	// PeerWait is how long Start waits for the peer to answer: if it does,
	// a wrong site or a name in use fails the start; if not, the poller
	// starts from its device cache and stops with that error when the peer
	// answers.
	PeerWait time.Duration
}

// Validate checks every field and names the first that breaks a rule.
func (c *ServiceConfig) Validate() error {
	if err := c.Config.Validate(); err != nil {
		return err
	}
	switch {
	case c.DataDir == "":
		return errors.New("poller data dir is empty; give the directory of the poller's store")
	case c.SpoolMaxBytes < 0:
		return fmt.Errorf("poller spool max bytes %d is negative; use 0 (the disk is the limit) or more", c.SpoolMaxBytes)
	case c.PeerWait < 0:
		return fmt.Errorf("poller peer wait %s is negative", c.PeerWait)
	}
	return nil
}

// Service is a poller with its store, its identity checks and its seat in
// the site's group: what 'meshmon poller run' runs. Make it with
// NewService, then Start and Close it, or Run it.
//
// Before it polls, a Service proves who it is: the peer must serve its site
// (Link.Sites) and no other running poller may hold its name
// (Link.Registry.Claim). Only then does it take its seat in the group.
type Service struct {
	cfg  ServiceConfig
	link Link
	log  *slog.Logger

	startOnce sync.Once
	closeOnce sync.Once
	startErr  error
	p         atomic.Pointer[Poller]
	cancel    context.CancelFunc
	ready     chan struct{} // closed once the poller is ready
	done      chan struct{} // closed once everything stopped
	err       error         // why it stopped; set before done is closed
}

// NewService checks cfg and link and returns a Service that is not started.
func NewService(cfg ServiceConfig, link Link, log *slog.Logger) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if link.Connected == nil || link.Sites == nil || link.Publisher == nil || link.Inventory == nil || link.Registry == nil {
		return nil, errors.New("poller link is incomplete: Connected, Sites, Publisher, Inventory and Registry are all needed")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg, link: link, log: log, ready: make(chan struct{}), done: make(chan struct{})}, nil
}

// Start opens the poller's store, waits up to PeerWait for the peer, proves
// the poller's identity if the peer answered, and starts the poller in the
// background. It returns once the poller runs, or with the error that kept
// it from running (ctx's if ctx ended first). The poller runs until Close
// or until ctx is done. Start runs once; later calls return its result.
func (s *Service) Start(ctx context.Context) error {
	s.startOnce.Do(func() {
		if s.startErr = s.start(ctx); s.startErr != nil {
			s.err = s.startErr
			close(s.done)
		}
	})
	return s.startErr
}

// Ready is closed once the poller has loaded its cached devices and, if
// configured, its trap listener listens.
func (s *Service) Ready() <-chan struct{} { return s.ready }

// Done is closed once the service stopped, by Close, by the end of Start's
// ctx, or on its own (an identity the peer refused, a trap port in use).
// Err then says why.
func (s *Service) Done() <-chan struct{} { return s.done }

// Err is why the service stopped once Done is closed (nil after a Close or
// the end of its ctx); nil before.
func (s *Service) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// Poller is the running poller (its Stats, its trap address), or nil
// before a successful Start. It may be called while Start runs (a metrics
// scrape: Collector(s.Poller)).
func (s *Service) Poller() *Poller { return s.p.Load() }

// Close stops the poller and its group seat, waits for them and closes the
// store. It returns why the service stopped, as Err does; a second Close
// returns the same. A Close while Start runs waits for Start to return
// (cancel Start's ctx to cut it short); a Close before Start keeps the
// service from starting.
func (s *Service) Close() error {
	s.startOnce.Do(func() {
		s.startErr = errors.New("poller service closed before it started")
		close(s.done)
	})
	s.closeOnce.Do(func() {
		if s.cancel != nil {
			s.cancel()
		}
	})
	<-s.done
	return s.err
}

// Run starts the service and runs it until ctx is done or it stops on its
// own. It returns nil when ctx ends it, even before the peer answered.
func (s *Service) Run(ctx context.Context) error {
	if err := s.Start(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	select {
	case <-ctx.Done():
	case <-s.done:
	}
	return s.Close()
}

func (s *Service) start(ctx context.Context) (err error) {
	cfg := s.cfg
	store, err := storage.Open(filepath.Join(cfg.DataDir, "poller-"+cfg.Name+".db"), storage.Options{MaxSpoolBytes: cfg.SpoolMaxBytes})
	if errors.Is(err, storage.ErrLocked) {
		return fmt.Errorf("poller %s: %w; is another 'poller run --name %s --data-dir %s' running?", cfg.Name, err, cfg.Name, cfg.DataDir)
	}
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			store.Close()
		}
	}()
	if s.cfg.Instance, err = store.Instance(); err != nil {
		return err
	}
	verified, err := s.waitPeer(ctx)
	if err != nil {
		return err
	}
	p, err := New(s.cfg.Config, s.log, store, s.link.Publisher, s.link.Inventory, s.link.Registry)
	if err != nil {
		return err
	}
	var group GroupMember
	if s.link.NewGroup != nil {
		if group, err = s.link.NewGroup(s.cfg.Seat()); err != nil {
			return err
		}
		p.JoinGroup(group)
	}
	s.p.Store(p)
	rctx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	go s.run(rctx, cancel, store, group, verified)
	return nil
}

// waitPeer waits up to PeerWait for the peer and proves the poller's
// identity if it answered; verified says whether it did.
func (s *Service) waitPeer(ctx context.Context) (verified bool, err error) {
	t := time.NewTimer(s.cfg.PeerWait)
	defer t.Stop()
	select {
	case <-s.link.Connected:
		if err := s.verify(ctx); err != nil {
			return false, err
		}
		return true, nil
	case <-t.C:
		s.log.Warn("peer not answering; polling from the device cache and spooling; the site and name are checked when it answers", "url", s.link.Peer)
		return false, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// verify proves the poller's identity: its peer serves its site, and its
// name is its own.
func (s *Service) verify(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, max(s.cfg.PeerWait, 5*time.Second))
	defer cancel()
	c := s.cfg
	if err := s.link.Sites.CheckSite(ctx, c.Site); err != nil {
		return fmt.Errorf("poller %s: %w", c.Name, err)
	}
	return s.link.Registry.Claim(ctx, meshmon.PollerInfo{Name: c.Name, Site: c.Site, Tenant: c.Tenant, Instance: c.Instance, Version: c.Version, Started: c.Now()})
}

// run runs the poller, and its group seat once its identity is proven,
// until ctx is done or the poller stops; then it closes the store and done.
func (s *Service) run(ctx context.Context, cancel context.CancelFunc, store *storage.DB, group GroupMember, verified bool) {
	perr := make(chan error, 1)
	go func() { perr <- s.p.Load().Run(ctx) }()
	var identityErr error
	seat := make(chan struct{})
	go func() {
		defer close(seat)
		if !verified {
			// Until the peer answers the poller polls the devices it
			// cached; it takes its seat in the group once proven.
			select {
			case <-s.link.Connected:
			case <-ctx.Done():
				return
			}
			if err := s.verify(ctx); err != nil {
				if ctx.Err() == nil {
					identityErr = err
					s.log.Error("stopping: this poller may not run against this peer", "err", err)
					cancel()
				}
				return
			}
		}
		var tasks sync.WaitGroup
		if s.link.Tasks != nil {
			tasks.Go(func() { s.serveTasks(ctx) })
		}
		if group != nil {
			group.Run(ctx)
		}
		tasks.Wait()
	}()
	var err error
	select {
	case err = <-perr:
	case <-s.p.Load().Ready():
		close(s.ready)
		err = <-perr
	}
	cancel()
	<-seat
	store.Close()
	if identityErr != nil {
		err = identityErr
	}
	s.err = err
	close(s.done)
}

// serveTasks serves the site's tasks until ctx is done, serving again
// after a failure.
func (s *Service) serveTasks(ctx context.Context) {
	b := backoff.New(time.Second, 30*time.Second)
	for ctx.Err() == nil {
		err := s.link.Tasks.Serve(ctx, s.cfg.Site, s.cfg.Name, s.p.Load())
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("serving tasks; trying again", "err", err)
		b.Wait(ctx)
	}
}
