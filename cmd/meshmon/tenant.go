package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/nats-io/nats.go"
	"github.com/urfave/cli/v2"

	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/cliflags"
	"github.com/meshmon/meshmon/tenancy"
	"github.com/meshmon/meshmon/tenancy/provision"
)

// keysFlag is --keys DIR, the key store of meshmon init.
func keysFlag() cli.Flag {
	def := "meshmon-keys"
	if home, err := os.UserHomeDir(); err == nil {
		def = filepath.Join(home, ".local", "share", "meshmon", "keys")
	}
	return &cli.StringFlag{Name: "keys", Value: def, EnvVars: []string{"MESHMON_KEYS"}, Usage: "the key store directory (meshmon init)"}
}

func initCommand() *cli.Command {
	return &cli.Command{
		Name:  "init",
		Usage: "create the operator, the system and ops accounts and their keys in a key store, and the trust file central peers run with",
		Flags: []cli.Flag{
			keysFlag(),
			&cli.StringFlag{Name: "operator", Value: "meshmon", Usage: "the operator's name"},
			jsonFlag(),
		},
		Action: runInit,
	}
}

func runInit(c *cli.Context) error {
	dir := c.String("keys")
	in, err := provision.Init(dir, c.String("operator"))
	if errors.Is(err, tenancy.ErrExists) {
		return fmt.Errorf("%w; a second init would replace the operator every peer trusts (use another --keys)", err)
	}
	if err != nil {
		return err
	}
	return show(c, in.Report(dir), func(w io.Writer) error { return in.WriteText(w, dir) })
}

// limitFlags set a tenant's limits; create takes their defaults, limits
// changes only those given.
func limitFlags() []cli.Flag {
	d := tenancy.DefaultLimits()
	return []cli.Flag{
		cliflags.SizeFlag("disk", d.DiskBytes, nil, "JetStream disk the tenant may use"),
		cliflags.SizeFlag("memory", d.MemoryBytes, nil, "JetStream memory the tenant may use"),
		&cli.Int64Flag{Name: "streams", Value: d.Streams, Usage: "JetStream streams and buckets"},
		&cli.Int64Flag{Name: "consumers", Value: d.Consumers, Usage: "JetStream consumers"},
		&cli.Int64Flag{Name: "connections", Value: d.Conns, Usage: "client connections"},
		&cli.Int64Flag{Name: "leafs", Value: d.LeafConns, Usage: "leaf connections (site links)"},
	}
}

// limitsFrom applies the limit flags to lim: all of them (create) or only
// those set (limits).
func limitsFrom(c *cli.Context, lim tenancy.Limits, onlySet bool) (tenancy.Limits, error) {
	size := func(name string) int64 { return cliflags.SizeOf(c, name) }
	for _, f := range []struct {
		name string
		get  func(string) int64
		v    *int64
	}{
		{"disk", size, &lim.DiskBytes}, {"memory", size, &lim.MemoryBytes}, {"streams", c.Int64, &lim.Streams},
		{"consumers", c.Int64, &lim.Consumers}, {"connections", c.Int64, &lim.Conns}, {"leafs", c.Int64, &lim.LeafConns},
	} {
		if !onlySet || c.IsSet(f.name) {
			*f.v = f.get(f.name)
		}
	}
	return lim, lim.Validate()
}

func tenantCommand() *cli.Command {
	store := []cli.Flag{keysFlag(), jsonFlag()}
	return &cli.Command{
		Name:  "tenant",
		Usage: "manage tenants: each is its own NATS account on central (peers run with --trust)",
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "create a tenant's account with its limits, push it to central and make its streams",
				ArgsUsage: "NAME",
				Flags:     append(append([]cli.Flag{}, store...), append(limitFlags(), &cli.IntFlag{Name: "replicas", Usage: "replicas of the tenant's streams", DefaultText: "3 on a cluster of three or more, else 1"})...),
				Action:    tenantCreate,
			},
			{Name: "list", Usage: "list the tenants of the key store", Flags: store, Action: tenantList},
			{Name: "show", Usage: "show a tenant: limits, users and, if central answers, what it uses", ArgsUsage: "NAME", Flags: store, Action: tenantShow},
			{
				Name: "limits", Usage: "change a tenant's limits at run time (only the flags given)", ArgsUsage: "NAME",
				Flags: append(append([]cli.Flag{}, store...), limitFlags()...), Action: tenantLimits,
			},
			{
				Name: "rm", Usage: "remove a tenant: its account, users and streams (refused while it holds data, unless --force)", ArgsUsage: "NAME",
				Flags:  append(append([]cli.Flag{}, store...), &cli.BoolFlag{Name: "force", Usage: "delete the tenant's events and samples too"}),
				Action: tenantRm,
			},
			{
				Name:      "creds",
				Usage:     "issue a user's credentials (--role poller|noc|admin|leaf), or revoke them (--revoke USER)",
				ArgsUsage: "[TENANT]",
				Flags: append(append([]cli.Flag{}, store...),
					&cli.StringFlag{Name: "role", Usage: "poller (publishes one site's events), noc (reads and replays), admin (manages devices, maintenance, alarms, notifications and tasks; makes no stream), leaf (a site's link)"},
					&cli.StringFlag{Name: "user", Usage: "the user's name (default: the role, or the role and site)"},
					&cli.StringFlag{Name: "site", Usage: "the site of a poller or leaf user"},
					&cli.StringFlag{Name: "out", Usage: "write the .creds file here (mode 0600) instead of to stdout"},
					&cli.StringFlag{Name: "revoke", Usage: "revoke this user's credentials instead"},
					&cli.BoolFlag{Name: "ops", Usage: "instead: credentials of the ops account, which reads every tenant's live events on tenants.<tenant>.ev.> (no TENANT)"},
				),
				Action: tenantCreds,
			},
		},
	}
}

// openTenant opens the key store and reads the tenant the single NAME
// argument names.
func openTenant(c *cli.Context) (string, *tenancy.Store, tenancy.Tenant, error) {
	name, err := nameArg(c, "tenant")
	if err != nil {
		return "", nil, tenancy.Tenant{}, err
	}
	st, err := tenancy.Open(c.String("keys"))
	if err != nil {
		return "", nil, tenancy.Tenant{}, err
	}
	t, err := st.Tenant(name)
	return name, st, t, err
}

// connectAs connects to central with in-memory credentials.
func connectAs(c *cli.Context, creds []byte, name string, opts ...nats.Option) (*nats.Conn, error) {
	auth, err := tenancy.CredsOption(creds)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
	defer cancel()
	return bus.ConnectWait(ctx, bus.ConnConfig{URL: c.String("server"), CAFile: c.String("tlsca"), Name: name}, append(opts, auth)...)
}

// dialers connect to central as the global flags say.
func dialers(c *cli.Context) provision.Dialers {
	return provision.Dialers{
		System: func(creds []byte) (*nats.Conn, error) { return connectAs(c, creds, "meshmon-cli-system") },
		Admin:  func(creds []byte) (*nats.Conn, error) { return connectAs(c, creds, "meshmon-cli-admin") },
	}
}

// pushCtx bounds an exchange with central of two steps: a push (two
// requests), or a connection and a read.
func pushCtx(c *cli.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.Context, 2*c.Duration("timeout"))
}

func tenantCreate(c *cli.Context) error {
	name, err := nameArg(c, "tenant")
	if err != nil {
		return err
	}
	lim, err := limitsFrom(c, tenancy.DefaultLimits(), false)
	if err != nil {
		return err
	}
	st, err := tenancy.Open(c.String("keys"))
	if err != nil {
		return err
	}
	sys, err := dialers(c).SystemConn(st)
	if err != nil {
		return fmt.Errorf("connect to central as the system account: %w", err)
	}
	defer sys.Close()
	ctx, cancel := pushCtx(c)
	defer cancel()
	t, replicas, err := provision.Create(ctx, st, sys, dialers(c).Admin, name, lim, c.Int("replicas"))
	if err != nil {
		return err
	}
	return output(c, t, "tenant %s created: account %s, streams EVENTS and METRICS at %d replica(s)\n"+
		"issue its users with: meshmon tenant creds %s --role noc|poller|admin|leaf\n", name, t.Account, replicas, name)
}

func tenantList(c *cli.Context) error {
	st, err := tenancy.Open(c.String("keys"))
	if err != nil {
		return err
	}
	ts, err := st.Tenants()
	if err != nil {
		return err
	}
	return showList(c, ts, provision.WriteTenants)
}

func tenantShow(c *cli.Context) error {
	name, st, t, err := openTenant(c)
	if err != nil {
		return err
	}
	ctx, cancel := pushCtx(c) // the connection (up to --timeout), then the read
	u, err := provision.TenantUsage(ctx, st, dialers(c).Admin, name)
	cancel()
	rep := provision.NewTenantReport(t, u, err)
	return show(c, rep, rep.WriteText)
}

func tenantLimits(c *cli.Context) error {
	name, st, t, err := openTenant(c)
	if err != nil {
		return err
	}
	lim, err := limitsFrom(c, t.Limits, true)
	if err != nil {
		return err
	}
	ctx, cancel := pushCtx(c)
	defer cancel()
	if t, err = provision.SetLimits(ctx, st, dialers(c), name, lim); err != nil {
		return err
	}
	return output(c, t, "tenant %s: limits changed and pushed to central\n", name)
}

func tenantRm(c *cli.Context) error {
	name, st, _, err := openTenant(c)
	if err != nil {
		return err
	}
	sys, err := dialers(c).SystemConn(st)
	if err != nil {
		return err
	}
	defer sys.Close()
	ctx, cancel := opCtx(c)
	defer cancel()
	n, err := provision.Remove(ctx, st, sys, dialers(c).Admin, name, c.Bool("force"))
	if err != nil {
		return err
	}
	return output(c, map[string]string{"result": "removed", "tenant": name}, "tenant %s removed: %d streams deleted, its account gone from central, its keys from the store\n", name, n)
}

func tenantCreds(c *cli.Context) error {
	if c.Bool("ops") {
		return opsCreds(c)
	}
	if c.NArg() == 0 {
		return fmt.Errorf("'%s' takes one argument without --ops, the tenant name; got 0 (see '%s --help')", c.Command.HelpName, c.Command.HelpName)
	}
	name, err := nameArg(c, "tenant")
	if err != nil {
		return err
	}
	revoke := c.String("revoke")
	role := tenancy.Role(c.String("role"))
	switch {
	case revoke != "" && (c.IsSet("role") || c.IsSet("out")):
		return errors.New("--revoke takes no --role or --out")
	case revoke == "" && role == "":
		return fmt.Errorf("--role is required: one of %v", tenancy.Roles)
	case revoke == "" && (role == tenancy.RolePoller || role == tenancy.RoleLeaf) && c.String("site") == "":
		return fmt.Errorf("--site is required for a %s user: it belongs to one site", role)
	}
	st, err := tenancy.Open(c.String("keys"))
	if err != nil {
		return err
	}
	ctx, cancel := pushCtx(c)
	defer cancel()
	if revoke != "" {
		if err := provision.Revoke(ctx, st, dialers(c), name, revoke); err != nil {
			return err
		}
		return output(c, map[string]string{"result": "revoked", "tenant": name, "user": revoke}, "user %s of tenant %s revoked: central refuses its credentials from now on, the tenant's sites once they see the change\n", revoke, name)
	}
	u, creds, err := provision.IssueCreds(ctx, st, dialers(c), name, c.String("user"), role, c.String("site"))
	if err != nil {
		return err
	}
	return writeCreds(c, creds, func(out string) error {
		if c.Bool("json") {
			return printJSON(os.Stdout, map[string]any{"result": "issued", "tenant": name, "user": u, "creds": out})
		}
		fmt.Fprintf(os.Stderr, "credentials of %s (%s) of tenant %s written to %s; keep them secret\n", u.Name, u.Role, name, out)
		return nil
	})
}

// writeCreds writes creds to --out (mode 0600) and then calls written,
// which says so; without --out, to stdout.
func writeCreds(c *cli.Context, creds []byte, written func(out string) error) error {
	out := c.String("out")
	if out == "" {
		_, err := os.Stdout.Write(creds)
		return err
	}
	if err := tenancy.WriteFile(out, creds); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	return written(out)
}

// opsCreds issues credentials of the ops account's consolidated view.
func opsCreds(c *cli.Context) error {
	if c.NArg() > 0 || c.IsSet("role") || c.IsSet("site") || c.IsSet("revoke") {
		return errors.New("--ops takes no TENANT, --role, --site or --revoke")
	}
	st, err := tenancy.Open(c.String("keys"))
	if err != nil {
		return err
	}
	user := c.String("user")
	if user == "" {
		user = "ops"
	}
	creds, err := st.OpsCreds(user, 0) // which checks the name
	if err != nil {
		return err
	}
	return writeCreds(c, creds, func(out string) error {
		_, err := fmt.Fprintf(os.Stderr, "ops credentials written to %s: they read every tenant's events on tenants.<tenant>.ev.> and run tasks at its sites (task --tenant); keep them secret\n", out)
		return err
	})
}
