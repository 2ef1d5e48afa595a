package main

import (
	"context"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
)

func topologyCommand() *cli.Command {
	return &cli.Command{
		Name:  "topology",
		Usage: "print a site's links, from its devices' latest LLDP and CDP neighbours (the lldp samples in METRICS)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "site", Usage: "the site whose links to print (required)"},
			jsonFlag(), tenantFlag(), keysFlag(),
		},
		Action: topology,
	}
}

func topology(c *cli.Context) error {
	// Checked here rather than with Required: urfave/cli prints the help
	// on stdout for a missing required flag.
	if c.String("site") == "" {
		return fmt.Errorf("--site is required (see '%s --help')", c.Command.HelpName)
	}
	var devs []meshmon.DeviceNeighbors
	err := withCentral(c, func(ctx context.Context, cl *client) error {
		// Tried again while a leader moves or a peer restarts, until
		// --timeout, as status does.
		return bus.Retry(ctx, func(ctx context.Context) (err error) {
			devs, err = bus.ReadNeighbors(ctx, cl.js, c.String("site"))
			return err
		})
	})
	if err != nil {
		return err
	}
	links := meshmon.Links(devs, nil)
	if c.Bool("json") {
		if links == nil {
			links = []meshmon.Link{}
		}
		return printJSON(os.Stdout, links)
	}
	return meshmon.WriteLinks(os.Stdout, links)
}
