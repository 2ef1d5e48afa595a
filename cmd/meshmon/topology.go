package main

import (
	"context"

	"github.com/urfave/cli/v2"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
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
	}
}

func topology(c *cli.Context) error {
	devs, err := ask(c, withCentral, func(ctx context.Context, cl *client) ([]meshmon.DeviceNeighbors, error) {
		// Tried again while a leader moves or a peer restarts, until
		// --timeout, as status does.
		return bus.Retried(ctx, func(ctx context.Context) ([]meshmon.DeviceNeighbors, error) {
			return bus.ReadNeighbors(ctx, cl.js, c.String("site"))
		})
	})
	if err != nil {
		return err
	}
	return showList(c, meshmon.Links(devs, nil), meshmon.WriteLinks)
}
