package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nuid"
	"github.com/urfave/cli/v2"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/tenancy"
)

func taskCommand() *cli.Command {
	common := func(timeout time.Duration, more ...cli.Flag) []cli.Flag {
		return append([]cli.Flag{
			&cli.StringFlag{Name: "site", Required: true, Usage: "the site that runs the task (required)"},
			&cli.StringFlag{Name: "tenant", Usage: "with an ops credential: the tenant whose site runs the task"},
			&cli.DurationFlag{Name: "task-timeout", Value: timeout, Usage: "how long the task may run; the site stops it then"},
			&cli.DurationFlag{Name: "reach", Value: bus.DefaultReach, Usage: "how long the site has to answer at all before it counts as offline"},
			jsonFlag(),
		}, more...)
	}
	port := &cli.IntFlag{Name: "snmp-port", Usage: "SNMP UDP port to try", DefaultText: "161"}
	return &cli.Command{
		Name:  "task",
		Usage: "act on a site now, from central, over the link the site dialled (see docs/tasks.md)",
		Subcommands: []*cli.Command{
			{Name: meshmon.TaskPollNow, Usage: "poll a device now and print the fresh readings", ArgsUsage: "DEVICE",
				Flags: common(30 * time.Second), Action: taskAction},
			{Name: meshmon.TaskWalk, Usage: "SNMP walk of a device's subtree, printed as it comes", ArgsUsage: "DEVICE OID",
				Flags: common(2 * time.Minute), Action: taskAction},
			{Name: meshmon.TaskPing, Usage: "ICMP echo to an address, from the site", ArgsUsage: "ADDRESS",
				Flags: common(15 * time.Second), Action: taskAction},
			{Name: meshmon.TaskSNMPGet, Usage: "SNMP GET at an address, from the site, with the first credential that answers", ArgsUsage: "ADDRESS OID...",
				Flags: common(15*time.Second, port, credentialsFlag()), Action: taskAction},
			{Name: meshmon.TaskDiscover, Usage: "ICMP sweep of a prefix, then SNMP with the site's credentials; prints the candidates",
				Flags: common(10*time.Minute, port, credentialsFlag(),
					&cli.StringFlag{Name: "cidr", Required: true, Usage: "the IPv4 prefix to sweep (required), at most a /22 without --allow-large"},
					&cli.BoolFlag{Name: "allow-large", Usage: "allow a prefix larger than a /22 (up to a /16)"},
					&cli.BoolFlag{Name: "snmp-without-ping", Usage: "try SNMP at every address, not only at those that answer ICMP (finds agents behind a filter that drops pings)"},
					&cli.IntFlag{Name: "rate", Value: meshmon.DiscoverDefaultRate, Usage: "probes a second at most"},
					&cli.BoolFlag{Name: "add", Usage: "add the candidates that answered SNMP to the site's inventory"},
					&cli.DurationFlag{Name: "interval", Value: time.Minute, Usage: "poll interval of the devices --add adds"},
				), Action: taskAction},
		},
	}
}

func credentialsFlag() cli.Flag {
	return &cli.StringFlag{Name: "credentials", Usage: "JSON file of SNMP settings to try first (a list of {version, community, user, auth_protocol, ...}); the site's own follow"}
}

// taskAction runs the subcommand's task.
func taskAction(c *cli.Context) error {
	req, err := taskRequest(c)
	if err != nil {
		return err
	}
	cl, err := connect(c)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	out := meshmon.NewTaskPrinter(req, c.Bool("json"), os.Stdout, os.Stderr)
	opt := bus.TaskOptions{Reach: c.Duration("reach"), OnReply: out.Reply, OpsTenant: c.String("tenant")}
	if req.Verb == meshmon.TaskDiscover {
		opt.Idle = max(opt.Reach, 2*time.Second)
	}
	err = bus.RunTask(ctx, cl.nc, req, opt)
	if errors.Is(err, context.Canceled) && c.Context.Err() == nil {
		return fmt.Errorf("task %s interrupted; asked site %s to stop it", req.ID, req.Site)
	}
	if err != nil {
		return err
	}
	if req.Verb == meshmon.TaskDiscover && c.Bool("add") {
		// The SNMP candidates go to the site's inventory, from here.
		err := withInventorySite(c, req.Site, func(ctx context.Context, inv *bus.Inventory) error {
			out.Result.Added = bus.AddCandidates(ctx, inv, out.Result.Candidates, req.Credentials, req.Port, c.Duration("interval"))
			return nil
		})
		if err != nil {
			return err
		}
	}
	return out.Finish()
}

// taskRequest builds the request from the flags and arguments.
func taskRequest(c *cli.Context) (meshmon.TaskRequest, error) {
	verb := c.Command.Name
	id := requester(c)
	switch {
	case id.Role == tenancy.RoleOps && c.String("tenant") == "":
		return meshmon.TaskRequest{}, errors.New("--tenant is required with an ops credential: the tenant whose site runs the task")
	case id.Role != tenancy.RoleOps && c.String("tenant") != "":
		return meshmon.TaskRequest{}, errors.New("--tenant is for an ops credential; a tenant's credential runs tasks at its own tenant's sites")
	case id.Role == tenancy.RoleOps && c.Bool("add"):
		return meshmon.TaskRequest{}, errors.New("--add: an ops credential cannot change a tenant's inventory; use the tenant's admin credential")
	}
	req := meshmon.TaskRequest{ID: nuid.Next(), Verb: verb, Site: c.String("site"), By: id.User,
		Timeout: meshmon.Duration(c.Duration("task-timeout"))}
	args := c.Args().Slice()
	switch verb {
	case meshmon.TaskPollNow:
		req.Device = args[0]
	case meshmon.TaskWalk:
		req.Device, req.OIDs = args[0], args[1:]
	case meshmon.TaskPing:
		req.Address = args[0]
	case meshmon.TaskSNMPGet:
		req.Address, req.OIDs = args[0], args[1:]
	case meshmon.TaskDiscover:
		req.CIDR, req.AllowLarge, req.Rate = c.String("cidr"), c.Bool("allow-large"), c.Int("rate")
		req.SNMPWithoutPing = c.Bool("snmp-without-ping")
	}
	if c.IsSet("snmp-port") {
		req.Port = c.Int("snmp-port")
	}
	if f := c.String("credentials"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return req, fmt.Errorf("--credentials: %w", err)
		}
		if err := json.Unmarshal(b, &req.Credentials); err != nil {
			return req, fmt.Errorf("--credentials %s: want a JSON list of SNMP settings: %w", f, err)
		}
	}
	if req.Timeout <= 0 {
		return req, fmt.Errorf("--task-timeout %s: use a positive duration", c.Duration("task-timeout"))
	}
	return req, req.Validate()
}

// requester is who the credentials name: the requests go on its user's
// subject, the only one its permissions allow (docs/tasks.md).
func requester(c *cli.Context) tenancy.Identity {
	if f := c.String("creds"); f != "" {
		if id, err := tenancy.CredsFileIdentity(f); err == nil {
			return id
		}
	}
	if u := c.String("user"); u != "" {
		return tenancy.Identity{User: u}
	}
	return tenancy.Identity{User: "anonymous"} // a mesh without authentication
}
