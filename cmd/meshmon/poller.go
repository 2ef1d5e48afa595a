package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/urfave/cli/v2"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/poller"
	"github.com/meshmon/meshmon/storage"
	"github.com/meshmon/meshmon/tenancy"
)

func pollerCommand() *cli.Command {
	def := poller.DefaultConfig()
	env := func(n string) []string { return []string{"MESHMON_POLLER_" + n} }
	host, _ := os.Hostname()
	return &cli.Command{
		Name:  "poller",
		Usage: "run a poller: SNMP, ICMP and traps for one site's devices",
		Subcommands: []*cli.Command{{
			Name:  "run",
			Usage: "poll the site's devices until SIGINT or SIGTERM",
			Flags: []cli.Flag{
				configFlag(),
				&cli.StringFlag{Name: "name", Value: sanitizeName(host), EnvVars: env("NAME"), Usage: "poller name, unique in the site (taken from a poller credential, --creds, whose user it is)"},
				&cli.StringFlag{Name: "site", EnvVars: env("SITE"), Usage: "site whose devices to poll (taken from a poller credential, --creds, when not given)"},
				&cli.StringFlag{Name: "tenant", Value: def.Tenant, EnvVars: env("TENANT"), Usage: "tenant the site belongs to (taken from a poller credential, --creds, when not given)"},
				&cli.StringFlag{Name: "data-dir", EnvVars: env("DATA_DIR"), Usage: "where the poller keeps its spool and state (bbolt)"},
				&cli.IntFlag{Name: "workers", Value: def.Workers, EnvVars: env("WORKERS"), Usage: "probes running at once"},
				&cli.StringFlag{Name: "trap-listen", EnvVars: env("TRAP_LISTEN"), Usage: "UDP address for SNMP traps, e.g. 0.0.0.0:162 (off when empty)"},
				&cli.StringFlag{Name: "trap-users-file", EnvVars: env("TRAP_USERS_FILE"), Usage: "YAML file of the SNMPv3 users whose traps and informs are accepted (mode 0600; v3 is dropped without it)"},
				&cli.StringFlag{Name: "icmp-mode", Value: "auto", EnvVars: env("ICMP_MODE"), Usage: "auto, unprivileged or privileged"},
				&cli.IntFlag{Name: "icmp-count", Value: def.ICMPCount, EnvVars: env("ICMP_COUNT"), Usage: "echo requests per ICMP probe"},
				&cli.IntFlag{Name: "down-after", Value: def.Damping.DownAfter, EnvVars: env("DOWN_AFTER"), Usage: "failed polls in a row before a down event"},
				&cli.IntFlag{Name: "up-after", Value: def.Damping.UpAfter, EnvVars: env("UP_AFTER"), Usage: "good polls in a row before an up event"},
				&cli.IntFlag{Name: "flap-changes", Value: def.Damping.FlapChanges, EnvVars: env("FLAP_CHANGES"), Usage: "changes within --flap-window that make a check flapping (0 = off)"},
				&cli.DurationFlag{Name: "flap-window", Value: def.Damping.FlapWindow, EnvVars: env("FLAP_WINDOW"), Usage: "window for flap detection"},
				sizeFlag("spool-max-bytes", 1<<30, env("SPOOL_MAX_BYTES"), "largest spool kept while the peer is away; 0 = the disk is the limit"),
				&cli.IntFlag{Name: "batch", Value: def.BatchSize, EnvVars: env("BATCH"), Usage: "messages per publish batch"},
				&cli.DurationFlag{Name: "heartbeat", Value: def.HeartbeatEvery, EnvVars: env("HEARTBEAT"), Usage: "how often the poller heartbeats to its group"},
				&cli.DurationFlag{Name: "member-timeout", Value: def.MemberTimeout, EnvVars: env("MEMBER_TIMEOUT"), Usage: "a group member silent this long loses its devices to the others"},
				&cli.DurationFlag{Name: "group-lease", Value: def.GroupLease, EnvVars: env("GROUP_LEASE"), Usage: "the group leader's lease, whole seconds"},
			},
			Action: pollerRun,
		}},
	}
}

func pollerRun(c *cli.Context) error {
	if err := applyConfig(c); err != nil {
		return err
	}
	cfg := poller.DefaultConfig()
	cfg.Name = c.String("name")
	cfg.Site = c.String("site")
	cfg.Tenant = c.String("tenant")
	if err := pollerIdentity(c, &cfg); err != nil {
		return err
	}
	if cfg.Site == "" {
		if err := required(c, "MESHMON_POLLER_", "site"); err != nil {
			return err
		}
	}
	if err := required(c, "MESHMON_POLLER_", "data-dir"); err != nil {
		return err
	}
	log, err := newLogger(c, os.Stderr)
	if err != nil {
		return err
	}
	cfg.Workers = c.Int("workers")
	cfg.TrapListen = c.String("trap-listen")
	if path := c.String("trap-users-file"); path != "" {
		if cfg.TrapUsers, err = poller.LoadTrapUsers(path); err != nil {
			return err
		}
		if open, mode, err := poller.TrapUsersFileMode(path); err == nil && open {
			log.Warn("the trap users file holds SNMPv3 pass phrases but others may read it; chmod 600 it", "file", path, "mode", fmt.Sprintf("%04o", mode))
		}
	}
	cfg.ICMPCount = c.Int("icmp-count")
	cfg.Damping.DownAfter = c.Int("down-after")
	cfg.Damping.UpAfter = c.Int("up-after")
	cfg.Damping.FlapChanges = c.Int("flap-changes")
	cfg.Damping.FlapWindow = c.Duration("flap-window")
	cfg.BatchSize = c.Int("batch")
	cfg.HeartbeatEvery = c.Duration("heartbeat")
	cfg.MemberTimeout = c.Duration("member-timeout")
	cfg.GroupLease = c.Duration("group-lease")
	cfg.Version = version
	if cfg.ICMPMode, err = poller.ParseICMPMode(c.String("icmp-mode")); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	ccfg := connConfig(c, "meshmon-poller-"+cfg.Name)
	if err := ccfg.Validate(); err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runPoller(ctx, cfg, ccfg, c.String("data-dir"), sizeOf(c, "spool-max-bytes"), c.Duration("timeout"), log, nil)
}

// runPoller opens the poller's store, connects to the peer (retrying in the
// background: the poller works without it) and runs until ctx is done.
// Before it polls it proves who it is: the peer must serve cfg.Site and no
// other running poller may hold cfg.Name. If the peer answers within wait
// a mismatch fails the start; if not, the poller starts from its cache and
// stops with the error when the peer answers. started, if not nil, is called
// once the poller is ready.
func runPoller(ctx context.Context, cfg poller.Config, ccfg bus.ConnConfig, dataDir string, spoolMax int64, wait time.Duration, log *slog.Logger, started func(*poller.Poller)) error {
	path := filepath.Join(dataDir, "poller-"+cfg.Name+".db")
	store, err := storage.Open(path, storage.Options{MaxSpoolBytes: spoolMax})
	if errors.Is(err, storage.ErrLocked) {
		return fmt.Errorf("poller %s: %w; is another 'poller run --name %s --data-dir %s' running?", cfg.Name, err, cfg.Name, dataDir)
	}
	if err != nil {
		return err
	}
	defer store.Close()
	if cfg.Instance, err = store.Instance(); err != nil {
		return err
	}

	connected := make(chan struct{})
	var once sync.Once
	markConnected := func(*nats.Conn) { once.Do(func() { close(connected) }) }
	nc, err := bus.Connect(ccfg,
		// No buffering while reconnecting: a publish then fails at once and
		// its messages stay in the spool, where the drainer re-sends them
		// in order (after checking, in a group, that they are still this
		// poller's); a buffered copy would arrive whenever it arrives.
		nats.ReconnectBufSize(-1),
		nats.ConnectHandler(markConnected),
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
		return err
	}
	defer nc.Close()
	if nc.IsConnected() {
		markConnected(nc)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	reg := &lazyRegistry{js: js}
	verify := func(ctx context.Context) error {
		vctx, cancel := context.WithTimeout(ctx, max(wait, 5*time.Second))
		defer cancel()
		if err := bus.CheckSite(vctx, js, cfg.Site); err != nil {
			return fmt.Errorf("poller %s: %w", cfg.Name, err)
		}
		return reg.Claim(vctx, meshmon.PollerInfo{Name: cfg.Name, Site: cfg.Site, Tenant: cfg.Tenant, Instance: cfg.Instance, Version: cfg.Version, Started: time.Now()})
	}
	verified := false
	select {
	case <-connected:
		if err := verify(ctx); err != nil {
			return err
		}
		verified = true
	case <-time.After(wait):
		log.Warn("peer not answering; polling from the device cache and spooling; the site and name are checked when it answers", "url", ccfg.URL)
	case <-ctx.Done():
		return nil
	}

	p, err := poller.New(cfg, log, store, bus.NewPublisher(js), &lazyInventory{js: js}, reg)
	if err != nil {
		return err
	}
	group, err := bus.NewGroup(js, groupConfig(cfg), log)
	if err != nil {
		return err
	}
	p.JoinGroup(group)
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- p.Run(pctx) }()
	// The poller takes part in its site's group once its identity is
	// proven; until then it polls the devices it cached.
	var (
		gmu                sync.Mutex
		gStarted, gStopped bool
		groupDone          = make(chan struct{})
	)
	joinGroup := func() {
		gmu.Lock()
		defer gmu.Unlock()
		if !gStopped {
			gStarted = true
			go func() { defer close(groupDone); group.Run(pctx) }()
		}
	}
	defer func() {
		cancel()
		gmu.Lock()
		gStopped = true
		started := gStarted
		gmu.Unlock()
		if started {
			<-groupDone
		}
	}()
	var identityErr error
	identity := make(chan struct{})
	if verified {
		joinGroup()
		close(identity)
	} else {
		go func() {
			defer close(identity)
			select {
			case <-connected:
			case <-pctx.Done():
				return
			}
			if err := verify(pctx); err != nil && pctx.Err() == nil {
				identityErr = err
				log.Error("stopping: this poller may not run against this peer", "err", err)
				cancel()
				return
			}
			joinGroup()
		}()
	}
	select {
	case err := <-errc:
		return err
	case <-p.Ready():
	}
	if started != nil {
		started(p)
	}
	err = <-errc
	cancel()
	<-identity
	if identityErr != nil {
		return identityErr
	}
	return err
}

// groupConfig is the poller group seat of a poller of cfg.
func groupConfig(cfg poller.Config) bus.GroupConfig {
	return bus.GroupConfig{Name: cfg.Name, Instance: cfg.Instance, Site: cfg.Site, Lease: cfg.GroupLease,
		MemberTimeout: cfg.MemberTimeout, Tick: min(100*time.Millisecond, cfg.MemberTimeout/4)}
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

// sanitizeName turns a host name into a valid poller name.
func sanitizeName(s string) string {
	out := make([]rune, 0, len(s))
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			out = append(out, r)
		case r == '.':
			return finishName(out)
		default:
			out = append(out, '-')
		}
	}
	return finishName(out)
}

func finishName(r []rune) string {
	s := strings.Trim(string(r), "-_")
	if len(s) > meshmon.MaxNameLen {
		s = s[:meshmon.MaxNameLen]
	}
	if s == "" {
		return "poller"
	}
	return s
}

// pollerIdentity checks --tenant, --site and --name against a poller
// credential of meshmon's (--creds), whose user JWT names its tenant, site
// and user, and takes them from it when the flags are not given (the
// poller's name is its user's). A credential that cannot
// publish events is refused at once rather than at the first publish.
func pollerIdentity(c *cli.Context, cfg *poller.Config) error {
	path := c.String("creds")
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--creds: %w", err)
	}
	id, err := tenancy.CredsIdentity(b)
	if err != nil {
		return fmt.Errorf("--creds %s: %w", path, err)
	}
	switch id.Role {
	case tenancy.RoleNOC, tenancy.RoleLeaf:
		return fmt.Errorf("--creds %s: a %s credential cannot publish events; issue a poller's with 'meshmon tenant creds TENANT --role poller --site SITE'", path, id.Role)
	}
	if id.Tenant != "" {
		if c.IsSet("tenant") && cfg.Tenant != id.Tenant {
			return fmt.Errorf("--tenant %q: the credential in %s is tenant %s's", cfg.Tenant, path, id.Tenant)
		}
		cfg.Tenant = id.Tenant
	}
	if id.Site != "" {
		if c.IsSet("site") && cfg.Site != id.Site {
			return fmt.Errorf("--site %q: the credential in %s is for site %s", cfg.Site, path, id.Site)
		}
		cfg.Site = id.Site
	}
	if id.Role == tenancy.RolePoller && id.User != "" {
		// A poller credential may write its own heartbeat only, whose key
		// is its user name (bus.PollerKey): the poller is named for it.
		if c.IsSet("name") && cfg.Name != id.User {
			return fmt.Errorf("--name %q: the credential in %s is poller %s's; drop --name or issue a credential with 'meshmon tenant creds %s --role poller --site %s --user %s'",
				cfg.Name, path, id.User, id.Tenant, id.Site, cfg.Name)
		}
		cfg.Name = id.User
	}
	return nil
}
