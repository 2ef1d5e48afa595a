package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/alarm"
	"github.com/meshmon/meshmon/bus/alarmbus"
	"github.com/meshmon/meshmon/tenancy"
)

func alarmsCommand() *cli.Command {
	action := func(verb, usage string, flags ...cli.Flag) *cli.Command {
		args := "ID"
		if verb == alarm.VerbComment {
			args = "ID TEXT"
		}
		return &cli.Command{Name: verb, Usage: usage, ArgsUsage: args, Flags: append(flags, tenantFlag(), keysFlag(), jsonFlag()),
			Action: func(c *cli.Context) error { return alarmsAct(c, verb) }}
	}
	comment := &cli.StringFlag{Name: "comment", Usage: "a comment kept with the action"}
	return &cli.Command{
		Name:  "alarms",
		Usage: "what is wrong now: the tenant's alarms at central (list, show) and a NOC's actions on them",
		Subcommands: []*cli.Command{
			{
				Name:  "list",
				Usage: "list alarms, worst first",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "site", Usage: "only this site"},
					&cli.StringFlag{Name: "device", Usage: "only this device"},
					&cli.StringFlag{Name: "severity", Usage: "only this severity: " + strings.Join(alarm.Severities, ", ")},
					&cli.StringFlag{Name: "state", Value: alarm.StateOpen, Usage: "open, cleared or all"},
					tenantFlag(), keysFlag(),
					jsonFlag(),
				},
				Action: alarmsList,
			},
			{Name: "show", Usage: "show one alarm", ArgsUsage: "ID", Flags: []cli.Flag{tenantFlag(), keysFlag(), jsonFlag()}, Action: alarmsShow},
			action(alarm.VerbAck, "acknowledge an alarm (NOC or admin)", comment),
			action(alarm.VerbUnack, "withdraw an acknowledgement (NOC or admin)"),
			action(alarm.VerbComment, "comment on an alarm (NOC or admin)"),
			action(alarm.VerbClear, "clear an alarm by hand (admin)", comment),
		},
	}
}

func alarmsList(c *cli.Context) error {
	f := alarm.Filter{Site: c.String("site"), Device: c.String("device"), Severity: c.String("severity"), State: c.String("state")}
	if err := f.Validate(); err != nil {
		return fmt.Errorf("--%w", err)
	}
	all, err := ask(c, withCentral, func(ctx context.Context, cl *client) ([]alarm.Alarm, error) { return alarmbus.List(ctx, cl.js) })
	if err != nil {
		return err
	}
	return showList(c, alarm.Select(all, f), alarm.WriteAlarms)
}

func alarmsShow(c *cli.Context) error {
	a, err := ask(c, withCentral, func(ctx context.Context, cl *client) (alarm.Alarm, error) {
		return alarmbus.Get(ctx, cl.js, c.Args().First())
	})
	if err != nil {
		return err
	}
	return show(c, a, a.WriteText)
}

func alarmsAct(c *cli.Context, verb string) error {
	user, role, err := actingUser(c)
	if err != nil {
		return err
	}
	if role == tenancy.RoleNOC && verb == alarm.VerbClear {
		return errors.New("clear takes an admin's credential; a NOC may ack, unack and comment")
	}
	act := alarm.Action{Verb: verb, ID: c.Args().First(), Text: c.String("comment"), By: user}
	if verb == alarm.VerbComment {
		act.Text = c.Args().Get(1)
	}
	if err := act.Validate(); err != nil {
		return err
	}
	cs, err := ask(c, withCentral, func(ctx context.Context, cl *client) ([]alarm.Change, error) {
		return alarmbus.Act(ctx, cl.nc, user, act)
	})
	if err != nil {
		return err
	}
	return output(c, cs, "alarm %s %s by %s\n", act.ID, cs[0].What, user)
}

// actingUser is the user an action is taken as: the credential's user
// (whose permissions allow its own name only), or, at a central with its
// own users, --user or "local"; with --tenant, the short-lived admin's.
func actingUser(c *cli.Context) (string, tenancy.Role, error) {
	if c.String("tenant") != "" {
		return tenancy.AdminCredsUser, tenancy.RoleAdmin, nil
	}
	if f := c.String("creds"); f != "" {
		id, err := tenancy.CredsFileIdentity(f)
		if err != nil {
			return "", "", fmt.Errorf("--creds: %w", err)
		}
		return id.User, id.Role, nil
	}
	if u := c.String("user"); u != "" {
		return u, "", meshmon.ValidateName("--user", u)
	}
	return "local", "", nil
}

func maintenanceCommand() *cli.Command {
	return &cli.Command{
		Name:  "maintenance",
		Usage: "maintenance windows at central: alarms in one still open, carry its id, and do not page",
		Subcommands: []*cli.Command{
			{
				Name:      "add",
				Usage:     "add a window over a device (--site, --device), a site (--site) or the whole tenant",
				ArgsUsage: "ID",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "site", Usage: "the site (with --device: the device's)"},
					&cli.StringFlag{Name: "device", Usage: "the device (needs --site)"},
					&cli.StringFlag{Name: "start", Required: true, Usage: "the (first) start: RFC 3339, or 2026-12-03T22:00 in --tz (required)"},
					&cli.DurationFlag{Name: "duration", Usage: "how long each occurrence lasts (or --end)"},
					&cli.StringFlag{Name: "end", Usage: "the (first) end, as --start (or --duration)"},
					&cli.StringFlag{Name: "every", Usage: "daily or weekly; one-off without"},
					&cli.StringFlag{Name: "tz", Value: "UTC", Usage: "IANA time zone of --start and of the recurrence (Europe/Paris)"},
					&cli.StringFlag{Name: "comment", Usage: "why"},
					tenantFlag(), keysFlag(),
					jsonFlag(),
				},
				Action: maintenanceAdd,
			},
			{Name: "list", Usage: "list the windows", Flags: []cli.Flag{tenantFlag(), keysFlag(), jsonFlag()}, Action: maintenanceList},
			{Name: "rm", Usage: "remove a window", ArgsUsage: "ID", Flags: []cli.Flag{tenantFlag(), keysFlag(), jsonFlag()}, Action: maintenanceRm},
		},
	}
}

func maintenanceWindow(c *cli.Context, id string) (alarm.Window, error) {
	if _, err := time.LoadLocation(c.String("tz")); err != nil || c.String("tz") == "" {
		return alarm.Window{}, fmt.Errorf("--tz %q: not an IANA time zone (e.g. Europe/Paris, or UTC)", c.String("tz"))
	}
	start, err := alarm.ParseStart(c.String("start"), c.String("tz"))
	if err != nil {
		return alarm.Window{}, fmt.Errorf("--start: %w", err)
	}
	d := c.Duration("duration")
	switch {
	case c.IsSet("duration") && c.IsSet("end"):
		return alarm.Window{}, errors.New("--duration and --end both say when the window ends; give one")
	case c.IsSet("end"):
		end, err := alarm.ParseStart(c.String("end"), c.String("tz"))
		if err != nil {
			return alarm.Window{}, fmt.Errorf("--end: %w", err)
		}
		d = end.Sub(start)
	case !c.IsSet("duration"):
		return alarm.Window{}, errors.New("--duration or --end is required")
	}
	user, _, err := actingUser(c)
	if err != nil {
		return alarm.Window{}, err
	}
	w := alarm.Window{ID: id, Site: c.String("site"), Device: c.String("device"), Start: start, Duration: meshmon.Duration(d),
		Every: c.String("every"), TZ: c.String("tz"), Comment: c.String("comment"), By: user, Created: time.Now().UTC()}
	return w, w.Validate()
}

func maintenanceAdd(c *cli.Context) error {
	w, err := maintenanceWindow(c, c.Args().First())
	if err != nil {
		return err
	}
	err = withCentral(c, func(_ context.Context, cl *client) error {
		// The maintenance bucket is central's to make: waited for up to
		// madeWait at a tenant's first use.
		return afterMade(c, func(ctx context.Context) error { return alarmbus.WaitMaintenance(ctx, cl.js) },
			func(ctx context.Context) error { return alarmbus.AddWindow(ctx, cl.js, w) })
	})
	if err != nil {
		return err
	}
	return output(c, w, "maintenance window %s added\n", w.ID)
}

func maintenanceList(c *cli.Context) error {
	ws, err := ask(c, withCentral, func(ctx context.Context, cl *client) ([]alarm.Window, error) { return alarmbus.ListWindows(ctx, cl.js) })
	if err != nil {
		return err
	}
	return showList(c, ws, alarm.WriteWindows)
}

func maintenanceRm(c *cli.Context) error {
	id := c.Args().First()
	if err := withCentral(c, func(ctx context.Context, cl *client) error { return alarmbus.RemoveWindow(ctx, cl.js, id) }); err != nil {
		return err
	}
	return output(c, map[string]string{"result": "removed", "id": id}, "maintenance window %s removed\n", id)
}
