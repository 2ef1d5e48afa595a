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
	devs, err := ask(c, withCentral, func(ctx context.Context, cl *client) (devs []meshmon.DeviceNeighbors, err error) {
		// Tried again while a leader moves or a peer restarts, until
		// --timeout, as status does.
		err = bus.Retry(ctx, func(ctx context.Context) (err error) {
			devs, err = bus.ReadNeighbors(ctx, cl.js, c.String("site"))
			return err
		})
		return devs, err
	})
	if err != nil {
		return err
	}
	return showList(c, meshmon.Links(devs, nil), meshmon.WriteLinks)
}
