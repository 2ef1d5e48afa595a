package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/tenancy"
	"github.com/meshmon/meshmon/tenancy/provision"
)

func siteCommand() *cli.Command {
	return &cli.Command{
		Name:  "site",
		Usage: "manage the sites central sources (run against a central peer)",
		Subcommands: []*cli.Command{
			{
				Name:      "add",
				Usage:     "add a site: central starts sourcing it; prints the join token its site peer needs",
				ArgsUsage: "NAME",
				Flags: []cli.Flag{
					tokenFileFlag(),
					&cli.BoolFlag{Name: "exist-ok", Usage: "a site that exists already is no error: print its token (for scripts run more than once)"},
					&cli.IntFlag{Name: "wait-central", Value: 1, Usage: "wait (up to --timeout) until this many central peers have published their leaf URL, so the token lists them all"},
					&cli.StringSliceFlag{Name: "central", Usage: "with --tenant: central's leaf URLs the site dials (nats-leaf://host:port), repeatable"},
					jsonFlag(), tenantFlag(), keysFlag(),
				},
				Action: siteAdd,
			},
			{Name: "list", Usage: "list the sites with their link state and lag", Flags: []cli.Flag{jsonFlag(), tenantFlag(), keysFlag()}, Action: siteList},
			{Name: "rm", Usage: "stop sourcing a site (what central holds of it stays)", ArgsUsage: "NAME", Flags: []cli.Flag{jsonFlag(), tenantFlag(), keysFlag()}, Action: siteRm},
			{Name: "join", Usage: "write the join token of a site again (to --token-file, default NAME.token, mode 0600)", ArgsUsage: "NAME", Flags: []cli.Flag{jsonFlag(), tokenFileFlag()}, Action: siteJoin},
		},
	}
}

// tokenFileFlag is --token-file, where site add and site join write the
// token.
func tokenFileFlag() cli.Flag {
	return &cli.StringFlag{Name: "token-file", Usage: "write the join token to this file (mode 0600; default SITE.token, or TENANT-SITE.token, in the working directory; with --json only if given); the command printed reads the file, the token never shows on the screen or in argv (--json still includes it)"}
}

// siteArg returns the NAME argument, validated.
func siteArg(c *cli.Context) (string, error) {
	name := c.Args().First()
	return name, bus.ValidateSite(name)
}

// tenantFlag is --tenant: the command works in that tenant's account on a
// central in operator mode, as a short-lived admin signed from the key store.
func tenantFlag() cli.Flag {
	return &cli.StringFlag{Name: "tenant", EnvVars: []string{"MESHMON_TENANT"}, Usage: "central in operator mode: the tenant whose sites these are (needs --keys)"}
}

// withCentral connects (as the tenant's admin with --tenant) and runs fn
// within one request timeout.
func withCentral(c *cli.Context, fn func(ctx context.Context, cl *client) error) error {
	t := c.String("tenant")
	if t == "" {
		return withPeer(c, fn)
	}
	st, err := tenancy.Open(c.String("keys"))
	if err != nil {
		return err
	}
	nc, js, err := provision.AdminJS(st, dialers(c).Admin, t)
	if err != nil {
		return err
	}
	return (&client{nc: nc, js: js}).run(c, fn)
}

// printJoin writes the join token to a file (mode 0600) and prints the
// command that reads it: a token in a command line is readable by every
// local user (/proc/PID/cmdline) and stays in shell histories. With --json
// the token is in the output for scripts, and a file is written only when
// --token-file names one.
func printJoin(c *cli.Context, verb, site string, info bus.JoinInfo) error {
	file := c.String("token-file")
	if file == "" {
		file = bus.JoinFile(c.String("tenant"), site)
	}
	res := bus.NewJoinResult(verb, site, info, file)
	if c.String("token-file") != "" || !c.Bool("json") {
		if err := tenancy.WriteFile(file, []byte(res.Token+"\n")); err != nil {
			return fmt.Errorf("--token-file: %w", err)
		}
		res.TokenFile = file
	}
	return show(c, res, res.WriteText)
}

func siteAdd(c *cli.Context) error {
	name, err := siteArg(c)
	if err != nil {
		return err
	}
	if c.String("tenant") != "" {
		return siteAddTenant(c, name)
	}
	info, err := ask(c, withCentral, func(ctx context.Context, cl *client) (bus.JoinInfo, error) {
		return bus.AddSiteJoin(ctx, cl.js, name, c.Int("wait-central"), time.Now())
	})
	var few *bus.TooFewCentralError
	if errors.As(err, &few) {
		return fmt.Errorf("%w (see --wait-central)", err)
	}
	if errors.Is(err, bus.ErrSiteExists) && c.Bool("exist-ok") {
		return printJoin(c, "exists", name, info)
	}
	if errors.Is(err, bus.ErrSiteExists) {
		return fmt.Errorf("site %s already exists; 'meshmon site join %s' writes its token again", name, name)
	}
	if err != nil {
		return err
	}
	return printJoin(c, "added", name, info)
}

func siteJoin(c *cli.Context) error {
	name, err := siteArg(c)
	if err != nil {
		return err
	}
	info, err := ask(c, withCentral, func(ctx context.Context, cl *client) (bus.JoinInfo, error) { return bus.SiteJoin(ctx, cl.js, name) })
	if errors.Is(err, bus.ErrSiteNotFound) {
		return fmt.Errorf("site %s not found; 'meshmon site add %s' adds it", name, name)
	}
	if err != nil {
		return err
	}
	return printJoin(c, "exists", name, info)
}

func siteRm(c *cli.Context) error {
	name, err := siteArg(c)
	if err != nil {
		return err
	}
	err = withCentral(c, func(ctx context.Context, cl *client) error { return bus.RemoveSite(ctx, cl.js, name) })
	if errors.Is(err, bus.ErrSiteNotFound) {
		return fmt.Errorf("site %s not found", name)
	}
	if err != nil {
		return err
	}
	return output(c, map[string]string{"result": "removed", "site": name}, "site %s removed; central stopped sourcing it and keeps what it holds\n", name)
}

func siteList(c *cli.Context) error {
	links, err := ask(c, withCentral, func(ctx context.Context, cl *client) ([]bus.SiteLink, error) {
		links, _, err := bus.CentralStatus(ctx, cl.js)
		if err == nil && credsRole(c) != tenancy.RoleNOC {
			bus.AskSites(ctx, cl.js, links)
		}
		return links, err
	})
	if err != nil {
		return err
	}
	return showList(c, links, bus.WriteSiteLinks)
}

// siteAddTenant adds a site to a tenant on a central in operator mode
// (provision.AddSite): central sources it and its leaf user is issued.
func siteAddTenant(c *cli.Context, name string) error {
	tenant, central := c.String("tenant"), c.StringSlice("central")
	if len(central) == 0 {
		return errors.New("--central is required with --tenant: central's leaf URLs, nats-leaf://host:port, that the site dials")
	}
	st, err := tenancy.Open(c.String("keys"))
	if err != nil {
		return err
	}
	// The token pins the CA this command verified central against.
	var ca []byte
	if f := c.String("tlsca"); f != "" {
		if ca, err = os.ReadFile(f); err != nil {
			return fmt.Errorf("--tlsca: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(c.Context, 3*c.Duration("timeout")) // the site's record, then a push
	defer cancel()
	info, err := provision.AddSite(ctx, st, dialers(c), tenant, name, central, ca, c.Bool("exist-ok"))
	if errors.Is(err, bus.ErrSiteExists) {
		return fmt.Errorf("site %s of tenant %s already exists; to give it a new token, revoke its users ('meshmon tenant creds %s --revoke leaf-%s', and site-%s) and add it with --exist-ok", name, tenant, tenant, name, name)
	}
	if err != nil {
		return err
	}
	return printJoin(c, "added", name, info)
}
