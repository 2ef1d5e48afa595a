package main

import (
	"context"

	"github.com/urfave/cli/v2"

	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/tenancy"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:   "status",
		Usage:  "show the peer, its streams, devices and the pollers it has seen",
		Flags:  []cli.Flag{jsonFlag()},
		Action: status,
	}
}

func status(c *cli.Context) error {
	rep, err := ask(c, withPeer, func(ctx context.Context, cl *client) (bus.StatusReport, error) {
		// Each read is tried again while a leader moves or a peer restarts
		// (a JetStream request then goes unanswered, or has no responders),
		// until --timeout.
		return bus.Retried(ctx, func(ctx context.Context) (bus.StatusReport, error) {
			return bus.ReadStatus(ctx, cl.nc, cl.js, credsRole(c) == tenancy.RoleNOC)
		})
	})
	if err != nil {
		return err
	}
	return show(c, rep, rep.WriteText)
}

// credsRole is the role of the tenant user whose --creds the command runs
// with; empty without meshmon tenant credentials.
func credsRole(c *cli.Context) tenancy.Role { return tenancy.CredsFileRole(c.String("creds")) }
