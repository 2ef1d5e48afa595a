package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/urfave/cli/v2"

	"github.com/meshmon/meshmon/alarm"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/peer"
	"github.com/meshmon/meshmon/tenancy"

	"github.com/meshmon/meshmon/internal/cliflags"
)

func peerCommand() *cli.Command {
	// The flags set def's fields; peerConfig checks and completes it.
	def := peer.DefaultConfig()
	lim := bus.DefaultStreamLimits()
	env := func(n string) []string { return []string{"MESHMON_PEER_" + n} }
	return &cli.Command{
		Name:  "peer",
		Usage: "run a peer (an embedded NATS server with JetStream), or remove one from central's cluster",
		Subcommands: []*cli.Command{{
			Name:  "run",
			Usage: "run a site or central peer until SIGINT or SIGTERM",
			Flags: append([]cli.Flag{
				configFlag(),
				&cli.StringFlag{Name: "name", Destination: &def.Name, EnvVars: env("NAME"), Usage: "server name, unique in the mesh (default: central; a site peer makes one at its first start, its site's name and a random suffix, and keeps it in its data dir)"},
				&cli.StringFlag{Name: "role", Value: peer.RoleSite, Destination: &def.Role, EnvVars: env("ROLE"), Usage: "site or central"},
				&cli.StringFlag{Name: "site", Destination: &def.Site, EnvVars: env("SITE"), Usage: "site name; also the JetStream domain (site role; taken from --join when not given)"},
				&cli.StringSliceFlag{Name: "join", EnvVars: env("JOIN"), Usage: "join token from 'meshmon site add' (site role): central's URLs and the leaf credential; one per tenant the site serves"},
				&cli.StringSliceFlag{Name: "join-file", EnvVars: env("JOIN_FILE"), Usage: "file holding a join token; repeat it for each tenant the site serves"},
				&cli.StringFlag{Name: "cluster-name", Destination: &def.Cluster.Name, EnvVars: env("CLUSTER_NAME"), Usage: "cluster name, the same on every member (default: meshmon-<domain>)"},
				&cli.StringFlag{Name: "cluster-listen", Destination: &def.Cluster.Listen, EnvVars: env("CLUSTER_LISTEN"), Usage: "route address host:port; set it to cluster this peer with --routes"},
				&cli.StringSliceFlag{Name: "routes", EnvVars: env("ROUTES"), Usage: "the other members' route URLs, nats-route://host:port, comma separated"},
				&cli.DurationFlag{Name: "leaf-dial-timeout", Value: peer.DefaultLeafDialTimeout, Destination: &def.LeafDialTimeout, EnvVars: env("LEAF_DIAL_TIMEOUT"), Usage: "site: how long one attempt to reach central may take (raise it for satellite links)"},
				&cli.StringFlag{Name: "leaf-listen", Destination: &def.LeafListen, EnvVars: env("LEAF_LISTEN"), Usage: "central: address sites dial in on, host:port (sites open no port)"},
				&cli.StringFlag{Name: "leaf-advertise", Destination: &def.LeafAdvertise, EnvVars: env("LEAF_ADVERTISE"), Usage: "central: host:port sites are told to dial, when it is not --leaf-listen"},
				&cli.StringFlag{Name: "leaf-password", EnvVars: env("LEAF_PASSWORD"), Usage: "central: the tenant's leaf password, the same on every central peer (12 characters or more)"},
				&cli.StringFlag{Name: "listen", Value: def.Listen, Destination: &def.Listen, EnvVars: env("LISTEN"), Usage: "client address host:port (port 0 picks one)"},
				&cli.StringFlag{Name: "data-dir", Destination: &def.DataDir, EnvVars: env("DATA_DIR"), Usage: "where JetStream keeps its files"},
				&cli.BoolFlag{Name: "sync-always", Value: def.SyncAlways, Destination: &def.SyncAlways, EnvVars: env("SYNC_ALWAYS"), Usage: "fsync every write (set false to fsync every 2 minutes: faster, may lose acknowledged writes on power loss)"},
				&cli.StringFlag{Name: "trust", Destination: &def.Trust, EnvVars: env("TRUST"), Usage: "central: the trust.json of 'meshmon init': operator mode, one account per tenant, users from 'meshmon tenant creds'"},
				&cli.StringFlag{Name: "auth-user", Destination: &def.Auth.User, EnvVars: env("AUTH_USER"), Usage: "require this user name from clients"},
				&cli.StringFlag{Name: "auth-password", EnvVars: env("AUTH_PASSWORD"), Usage: "password for --auth-user, 12 characters or more (prefer --auth-password-file: argv is readable by every local user)"},
				&cli.StringFlag{Name: "auth-password-file", EnvVars: env("AUTH_PASSWORD_FILE"), Usage: "file holding the password for --auth-user"},
				&cli.StringFlag{Name: "auth-nkey", Destination: &def.Auth.NKey, EnvVars: env("AUTH_NKEY"), Usage: "require this user nkey (public key, U...) from clients"},
				cliflags.AgeFlag("events-max-age", lim.EventsMaxAge, env("EVENTS_MAX_AGE"), "how long EVENTS keeps events"),
				cliflags.SizeFlag("events-max-bytes", lim.EventsMaxBytes, env("EVENTS_MAX_BYTES"), "EVENTS size limit"),
				cliflags.AgeFlag("metrics-max-age", lim.MetricsMaxAge, env("METRICS_MAX_AGE"), "how long METRICS keeps samples"),
				cliflags.SizeFlag("metrics-max-bytes", lim.MetricsMaxBytes, env("METRICS_MAX_BYTES"), "METRICS size limit"),
				cliflags.AgeFlag("events-dedup-window", lim.EventsDuplicates, env("EVENTS_DEDUP_WINDOW"), "EVENTS duplicate window (message ids)"),
				cliflags.AgeFlag("metrics-dedup-window", lim.MetricsDuplicates, env("METRICS_DEDUP_WINDOW"), "METRICS duplicate window"),
				cliflags.SizeFlag("max-store", 0, env("MAX_STORE"), "disk JetStream may use in --data-dir, every tenant's streams together (0: three quarters of the disk's free space at start)"),
				cliflags.SizeFlag("max-memory", 0, env("MAX_MEMORY"), "memory JetStream may use for memory streams (0: three quarters of the RAM)"),
				&cli.StringFlag{Name: "http", Destination: &def.HTTPListen, EnvVars: env("HTTP"), Usage: "monitoring address host:port, HTTPS with basic auth (a host left out means 127.0.0.1; off when empty)"},
				&cli.StringFlag{Name: "http-user", EnvVars: env("HTTP_USER"), Usage: "user name the monitor asks for (default: --auth-user; monitor with --http-password-file)"},
				&cli.StringFlag{Name: "http-password-file", EnvVars: env("HTTP_PASSWORD_FILE"), Usage: "file holding the monitor's password (default: the --auth-user password)"},
				&cli.StringFlag{Name: "tls-cert", Destination: &def.TLS.Cert, EnvVars: env("TLS_CERT"), Usage: "the peer's certificate (PEM), from 'meshmon tls issue'; served on every listener"},
				&cli.StringFlag{Name: "tls-key", Destination: &def.TLS.Key, EnvVars: env("TLS_KEY"), Usage: "the certificate's private key (PEM)"},
				&cli.StringFlag{Name: "tls-ca", Destination: &def.TLS.CA, EnvVars: env("TLS_CA"), Usage: "the mesh's CA (PEM): route members are verified against it both ways"},
				&cli.DurationFlag{Name: "tls-watch", Value: peer.DefaultTLSWatch, Destination: &def.TLS.Watch, EnvVars: env("TLS_WATCH"), Usage: "how often to look for new --tls-cert/--tls-key files and reload them (0: never; SIGHUP reloads too)"},
				&cli.DurationFlag{Name: "alarm-late-after", Value: alarm.DefaultLateAfter, Destination: &def.AlarmLateAfter, EnvVars: env("ALARM_LATE_AFTER"), Usage: "central: an event reaching the alarms this long after its time makes late changes, which notifications summarise instead of paging each (a site catching up after a link cut)"},
				&cli.BoolFlag{Name: "notify-allow-loopback", Destination: &def.NotifyAllowLoopback, EnvVars: env("NOTIFY_ALLOW_LOOPBACK"), Usage: "central: let notification channels reach loopback addresses (a mail relay on this host); refused otherwise, so that a tenant admin's channel cannot reach central's own ports"},
				&cli.StringSliceFlag{Name: "notify-deny-net", EnvVars: env("NOTIFY_DENY_NETS"), Usage: "central: a network, in CIDR form, that notification channels may not reach (repeat it, or commas): your own, such as central's management network, which a tenant admin's channel could otherwise probe"},
				&cli.BoolFlag{Name: "insecure", Destination: &def.Insecure, EnvVars: env("INSECURE"), Usage: "allow plaintext listeners and links, clients without credentials off loopback and an open monitor (warns at start)"},
				jsonFlag(),
			}, append(consoleFlags(env), metricsFlags(env, true)...)...),
			Action: func(c *cli.Context) error { return peerRun(c, &def) },
		}, {
			Name:      "rm",
			Usage:     "remove a central peer that is gone for good from its cluster (its replicas move to the other peers)",
			ArgsUsage: "NAME",
			Description: "Run it against a running central peer (--server) once the machine of peer NAME is lost,\n" +
				"or before a peer of another name takes its place. A peer the cluster has heard from within 10 s\n" +
				"is refused unless --force. In operator mode (central runs with --trust) give --keys: the removal\n" +
				"is made as the system account.",
			Flags: []cli.Flag{
				&cli.BoolFlag{Name: "force", Usage: "remove the peer even though it is up (stop it first: a removed peer that runs keeps trying to rejoin)"},
				&cli.StringFlag{Name: "keys", EnvVars: []string{"MESHMON_KEYS"}, Usage: "operator mode: the key store of meshmon init"},
				jsonFlag(),
			},
			Action: peerRemove,
		}, {
			Name:  "ready",
			Usage: "wait (up to --timeout) until the peer at --server serves its streams and buckets; exit 0 then, 1 saying what is missing",
			Description: "A peer answers clients before its streams exist: a clustered peer makes them once its cluster\n" +
				"has a JetStream quorum. 'peer ready' connects, then checks every stream and bucket of the peer's\n" +
				"role (central: EVENTS, METRICS and its sites and central buckets; a site: EVENTS, METRICS and\n" +
				"its devices, pollers and group buckets) until each answers from a leader. Compose runs it as a\n" +
				"peer's healthcheck, so that clients start once their peer is ready.",
			Action: peerReady,
		}},
	}
}

// peerReady is 'peer ready': bus.WaitReady until --timeout ends.
func peerReady(c *cli.Context) error {
	ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
	defer cancel()
	nc, js, err := bus.ConnectDomain(ctx, connConfig(c, "meshmon-ready"), "") // which validates it
	if err != nil {
		return err
	}
	defer nc.Close()
	if err := bus.WaitReady(ctx, js); err != nil {
		return fmt.Errorf("%w (after --timeout %s)", err, c.Duration("timeout"))
	}
	return nil
}

// removeCtx bounds a peer removal: it waits for the cluster's meta leader,
// which a lost peer may have been, and gives a peer the new leader has not
// heard from a few seconds to answer; so at least 20 s, or --timeout.
func removeCtx(c *cli.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.Context, max(c.Duration("timeout"), 20*time.Second))
}

func peerRemove(c *cli.Context) error {
	name, force := c.Args().First(), c.Bool("force")
	// In operator mode as the system account, else over the peer's
	// request subject.
	var nc *nats.Conn
	remove := bus.RemovePeer
	if dir := c.String("keys"); dir != "" {
		st, err := tenancy.Open(dir)
		if err != nil {
			return err
		}
		if nc, err = dialers(c).SystemConn(st); err != nil {
			return fmt.Errorf("connect to central as the system account: %w", err)
		}
		remove = bus.RemoveClusterPeer
	} else {
		cl, err := connect(c)
		if err != nil {
			return err
		}
		nc = cl.nc
	}
	defer nc.Close()
	ctx, cancel := removeCtx(c)
	defer cancel()
	left, err := remove(ctx, nc, name, force)
	if err != nil {
		return err
	}
	rep := bus.PeerRemoved{Members: left, Removed: name}
	return show(c, rep, rep.WriteText)
}

func peerRun(c *cli.Context, cfg *peer.Config) error {
	if err := cliflags.ApplyConfig(c); err != nil {
		return err
	}
	if err := cliflags.Required(c, "data-dir"); err != nil {
		return err
	}
	log, err := newLogger(c, os.Stderr)
	if err != nil {
		return err
	}
	if err := peerConfig(c, cfg); err != nil {
		return err
	}
	if err := checkConsoleFlags(c, cfg); err != nil {
		return err
	}
	if err := checkMetrics(c, cfg.TLS.Cert != ""); err != nil {
		return err
	}
	peerProcs()
	p, err := peer.New(*cfg, log)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := p.Start(ctx); err != nil {
		return err
	}
	defer p.Close()
	p.ReloadOnSIGHUP()
	con, err := startConsole(c, p, log)
	if err != nil {
		return err
	}
	defer con.Close()
	if c.String("metrics-listen") != "" { // p.Metrics starts the delay watch
		ms, err := serveMetrics(c, p.ServerTLS(), log, p.Metrics())
		if err != nil {
			return err
		}
		defer ms.Close()
	}
	if cfg.Auth == (peer.Auth{}) && cfg.Trust == "" && len(cfg.Tenants) == 0 {
		log.Warn("no client authentication configured: anyone who reaches the listen address can read and write; set --auth-user/--auth-password or --auth-nkey")
	}
	if c.Bool("json") {
		if err := printJSON(os.Stdout, map[string]string{"name": p.Config().Name, "role": cfg.Role, "domain": cfg.Domain(), "url": p.ClientURL(), "leaf_url": p.LeafURL(), "data_dir": cfg.DataDir, "console": con.URL()}); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(os.Stdout, "peer %s ready on %s\n", p.Config().Name, p.ClientURL())
		if con != nil {
			fmt.Fprintf(os.Stdout, "console on %s\n", con.URL())
		}
	}
	<-ctx.Done()
	log.Info("shutting down")
	return nil
}

// peerConfig checks and completes cfg, which 'peer run's flags set.
func peerConfig(c *cli.Context, cfg *peer.Config) error {
	if cfg.Role != peer.RoleSite && cfg.Role != peer.RoleCentral {
		return fmt.Errorf("--role %q: want %s or %s", cfg.Role, peer.RoleSite, peer.RoleCentral)
	}
	files, err := cliflags.Files(c, "join-file")
	if err != nil {
		return err
	}
	// A damaged token names the file it came from.
	for i, tok := range files {
		if _, _, err := bus.ParseJoinToken(tok); err != nil {
			return fmt.Errorf("--join-file %s: %w", c.StringSlice("join-file")[i], err)
		}
	}
	tokens := append(c.StringSlice("join"), files...)
	if err := cfg.ApplyJoin(tokens); err != nil {
		return err
	}
	switch {
	case cfg.Role == peer.RoleCentral:
		cfg.Site = ""
	case cfg.Site == "":
		return fmt.Errorf("--site is required for a site peer (flag, MESHMON_PEER_SITE, key \"site\" in --config, or from --join)")
	}
	if cfg.Name == "" && cfg.Role == peer.RoleCentral {
		cfg.Name = "central" // a site peer makes its own at start (peer.Config)
	}
	cfg.Cluster.Routes = c.StringSlice("routes")
	cfg.NotifyDenyNets = c.StringSlice("notify-deny-net")
	if cfg.Role == peer.RoleCentral {
		cfg.LeafPassword = c.String("leaf-password")
	}
	if err := peerAuth(c, cfg); err != nil {
		return err
	}
	if cfg.TLS.Watch == 0 {
		cfg.TLS.Watch = -1 // never
	}
	cfg.Limits.EventsMaxAge = cliflags.AgeOf(c, "events-max-age")
	cfg.Limits.EventsMaxBytes = cliflags.SizeOf(c, "events-max-bytes")
	cfg.Limits.MetricsMaxAge = cliflags.AgeOf(c, "metrics-max-age")
	cfg.Limits.MetricsMaxBytes = cliflags.SizeOf(c, "metrics-max-bytes")
	// Defaults are fitted to a small disk; sizes the operator chose are
	// not (the peer then says which flags to set).
	cfg.FitLimits = !c.IsSet("events-max-bytes") && !c.IsSet("metrics-max-bytes")
	cfg.Limits.EventsDuplicates = cliflags.AgeOf(c, "events-dedup-window")
	cfg.Limits.MetricsDuplicates = cliflags.AgeOf(c, "metrics-dedup-window")
	cfg.MaxStore, cfg.MaxMemory = cliflags.SizeOf(c, "max-store"), cliflags.SizeOf(c, "max-memory")
	return nil
}

// peerAuth sets cfg's client authentication and the monitor's user and
// password from the --auth-* and --http-* flags.
func peerAuth(c *cli.Context, cfg *peer.Config) error {
	pw, err := cliflags.Secret(c, "auth-password")
	if err != nil {
		return err
	}
	cfg.Auth.Password = pw
	cfg.HTTPUser, cfg.HTTPPassword = cfg.Auth.User, cfg.Auth.Password
	if f := c.String("http-password-file"); f != "" {
		if cfg.HTTPPassword, err = readSecret(f); err != nil {
			return fmt.Errorf("--http-password-file: %w", err)
		}
		cfg.HTTPUser = "monitor"
	}
	if u := c.String("http-user"); u != "" {
		cfg.HTTPUser = u
	}
	return nil
}
