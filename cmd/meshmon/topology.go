package main

import (
	"context"
	"fmt"
	"io"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/urfave/cli/v2"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/tenancy"
	"github.com/meshmon/meshmon/tenancy/provision"
)

func topologyCommand() *cli.Command {
	return &cli.Command{
		Name:  "topology",
		Usage: "print a site's links, from its devices' latest LLDP and CDP neighbours (the lldp samples in METRICS)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "site", Required: true, Usage: "the site whose links to print (required)"},
			jsonFlag(), tenantFlag(), keysFlag(),
		},
		Action: topology,
		Subcommands: []*cli.Command{{
			Name: "parents",
			Usage: "set the alarm parents of a site's devices from its links: each device's parent is its neighbour " +
				"one hop nearer the nearest --root (dry run without --apply)",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "site", Required: true, Usage: "the site whose devices' parents to set (required)"},
				&cli.StringSliceFlag{Name: "root", Required: true, Usage: "DEVICE[,DEVICE...]: the devices the site is reached through, which get no parent (required)"},
				&cli.BoolFlag{Name: "apply", Usage: "write the parents to the site's inventory (without it, only print what would be done)"},
				&cli.BoolFlag{Name: "replace", Usage: "replace parents set by hand that the links disagree with (without it, they are kept)"},
				jsonFlag(), tenantFlag(), keysFlag(),
			},
			Action: topologyParents,
		}},
	}
}

func topology(c *cli.Context) error {
	devs, err := ask(c, withCentral, func(ctx context.Context, cl *client) ([]meshmon.DeviceNeighbors, error) {
		return readNeighbors(ctx, cl.js, c.String("site"))
	})
	if err != nil {
		return err
	}
	return showList(c, meshmon.Links(devs, nil), meshmon.WriteLinks)
}

// readNeighbors reads the site's latest neighbour tables, tried again
// while a leader moves or a peer restarts, until --timeout, as status
// does.
func readNeighbors(ctx context.Context, js jetstream.JetStream, site string) ([]meshmon.DeviceNeighbors, error) {
	return bus.Retried(ctx, func(ctx context.Context) ([]meshmon.DeviceNeighbors, error) {
		return bus.ReadNeighbors(ctx, js, site)
	})
}

// topologyParents plans (meshmon.PlanParents) and, with --apply, writes
// the parents the site's links give its devices. Each parent is written
// on condition that the device has not changed since it was read
// (Inventory.Update): an edit made meanwhile is not undone.
func topologyParents(c *cli.Context) error {
	site := c.String("site")
	if err := bus.ValidateSite(site); err != nil {
		return fmt.Errorf("--site: %w", err)
	}
	roots := c.StringSlice("root")
	for _, r := range roots {
		if err := meshmon.ValidateName("--root", r); err != nil {
			return err
		}
	}
	var changes []meshmon.ParentChange
	failed := 0
	err := withTopologySite(c, site, func(ctx context.Context, metrics, sjs jetstream.JetStream) error {
		nbs, err := readNeighbors(ctx, metrics, site)
		if err != nil {
			return err
		}
		if len(nbs) == 0 {
			return fmt.Errorf("--site %s: no lldp samples in METRICS: no device of the site has reported its neighbours yet (its pollers read them at each device's first SNMP poll, then every --topology-interval)", site)
		}
		inv, err := bus.OpenSiteInventory(ctx, sjs, site, c.Duration("timeout"))
		if err != nil {
			return err
		}
		devs, err := inv.List(ctx)
		if err != nil {
			return err
		}
		if changes, err = meshmon.PlanParents(devs, meshmon.Links(nbs, devs), roots, c.Bool("replace")); err != nil {
			return fmt.Errorf("--root: %w (site %s)", err, site)
		}
		if !c.Bool("apply") {
			return nil
		}
		byName := map[string]meshmon.Device{}
		for _, d := range devs {
			byName[d.Name] = d
		}
		for i, ch := range changes {
			if !ch.Writes() {
				continue
			}
			d := byName[ch.Device]
			d.Parent = ch.Topology
			if _, err := inv.Update(ctx, d); err != nil {
				changes[i].Error = err.Error()
				failed++
				continue
			}
			changes[i].Applied = true
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := showList(c, changes, func(w io.Writer, cs []meshmon.ParentChange) error {
		if err := meshmon.WriteParentChanges(w, cs); err != nil {
			return err
		}
		return writeParentsSummary(w, cs, c.Bool("apply"))
	}); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d parents not written (see the table); run the command again", failed)
	}
	return nil
}

// writeParentsSummary says how many parents were written, or would be.
func writeParentsSummary(w io.Writer, cs []meshmon.ParentChange, applied bool) error {
	n := map[string]int{}
	for _, c := range cs {
		n[c.Action]++
	}
	writes := n[meshmon.ParentSet] + n[meshmon.ParentReplace]
	var err error
	switch {
	case applied:
		_, err = fmt.Fprintf(w, "%d parents written (%d set, %d replaced); %d kept, %d unreachable left alone\n",
			writes, n[meshmon.ParentSet], n[meshmon.ParentReplace], n[meshmon.ParentKeep]+n[meshmon.ParentLoop], n[meshmon.ParentUnreachable])
	default:
		_, err = fmt.Fprintf(w, "dry run: %d parents to write (%d to set, %d to replace); --apply writes them\n",
			writes, n[meshmon.ParentSet], n[meshmon.ParentReplace])
	}
	return err
}

// withTopologySite connects as topology does (as the tenant's admin with
// --tenant), with the inbox prefix that carries the site's replies across
// its leaf link, and runs fn within one request timeout with METRICS
// where topology reads it (metrics) and the site's JetStream domain (sjs:
// from central, across the site's leaf link; at the site peer, its own).
func withTopologySite(c *cli.Context, site string, fn func(ctx context.Context, metrics, sjs jetstream.JetStream) error) error {
	var cl *client
	if t := c.String("tenant"); t != "" {
		st, err := tenancy.Open(c.String("keys"))
		if err != nil {
			return err
		}
		nc, js, err := provision.AdminJS(st, func(creds []byte) (*nats.Conn, error) {
			return connectAs(c, creds, "meshmon-cli-admin", nats.CustomInboxPrefix(bus.SiteInboxPrefix(site)))
		}, t)
		if err != nil {
			return err
		}
		cl = &client{nc: nc, js: js}
	} else {
		var err error
		if cl, err = connectSite(c, site); err != nil {
			return err
		}
		if cl.js, err = jetstream.New(cl.nc); err != nil {
			cl.Close()
			return fmt.Errorf("jetstream: %w", err)
		}
	}
	sjs, err := jetstream.NewWithDomain(cl.nc, site)
	if err != nil {
		cl.Close()
		return fmt.Errorf("jetstream: %w", err)
	}
	return cl.run(c, func(ctx context.Context, cl *client) error { return fn(ctx, cl.js, sjs) })
}
