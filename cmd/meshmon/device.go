package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/urfave/cli/v2"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
)

func deviceCommand() *cli.Command {
	return &cli.Command{
		Name:  "device",
		Usage: "manage the site inventory",
		Subcommands: []*cli.Command{
			{
				Name:      "add",
				Usage:     "add a device (or replace one with --replace)",
				ArgsUsage: "NAME",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "address", Aliases: []string{"a"}, Required: true, Usage: "IP address or host name (required)"},
					&cli.StringSliceFlag{Name: "checks", Value: cli.NewStringSlice(meshmon.CheckICMP, meshmon.CheckSNMP), Usage: "icmp, snmp or both"},
					&cli.DurationFlag{Name: "interval", Value: time.Minute, Usage: "time between polls"},
					&cli.DurationFlag{Name: "probe-timeout", Usage: "per SNMP request or ICMP probe", DefaultText: meshmon.DefaultTimeout.String()},
					&cli.IntFlag{Name: "retries", Value: 1, Usage: "SNMP retries per request"},
					&cli.StringFlag{Name: "snmp-version", Value: meshmon.SNMPv2c, Usage: "1, 2c or 3"},
					&cli.IntFlag{Name: "snmp-port", Usage: "SNMP UDP port", DefaultText: "161"},
					&cli.StringFlag{Name: "community", Usage: "SNMP v1/v2c community", DefaultText: "public"},
					&cli.StringFlag{Name: "v3-user", Usage: "SNMPv3 user"},
					&cli.StringFlag{Name: "auth-proto", Usage: "SNMPv3 auth protocol: " + strings.Join(meshmon.AuthProtocols, ", ")},
					&cli.StringFlag{Name: "auth-pass", Usage: "SNMPv3 auth password"},
					&cli.StringFlag{Name: "priv-proto", Usage: "SNMPv3 privacy protocol: " + strings.Join(meshmon.PrivProtocols, ", ")},
					&cli.StringFlag{Name: "priv-pass", Usage: "SNMPv3 privacy password"},
					&cli.StringFlag{Name: "context", Usage: "SNMPv3 context name"},
					&cli.StringFlag{Name: "parent", Usage: "the device (at the same site, already added) this one is reached through: while it is down, this device's unreachable alarms are its symptoms"},
					&cli.BoolFlag{Name: "replace", Usage: "replace the device if it exists"},
					jsonFlag(), siteFlag(),
				},
				Action: deviceAdd,
			},
			{Name: "list", Usage: "list devices (secrets masked unless --show-secrets)", Flags: []cli.Flag{jsonFlag(), showSecretsFlag(), siteFlag()}, Action: deviceList},
			{Name: "show", Usage: "show one device (secrets masked unless --show-secrets)", ArgsUsage: "NAME", Flags: []cli.Flag{jsonFlag(), showSecretsFlag(), siteFlag()}, Action: deviceShow},
			{
				Name:      "import",
				Usage:     "add devices from JSON: one device or a list, as 'device list --json --show-secrets' prints them ('-' reads stdin)",
				ArgsUsage: "FILE",
				Flags:     []cli.Flag{&cli.BoolFlag{Name: "replace", Usage: "replace devices that exist"}, jsonFlag(), siteFlag()},
				Action:    deviceImport,
			},
			{Name: "rm", Usage: "remove a device", ArgsUsage: "NAME", Flags: []cli.Flag{jsonFlag(), siteFlag()}, Action: deviceRm},
		},
	}
}

// deviceFromFlags builds a device from add's flags and validates it.
func deviceFromFlags(c *cli.Context, name string) (meshmon.Device, error) {
	if c.IsSet("community") && c.String("community") == "" {
		return meshmon.Device{}, errors.New("--community is empty; leave the flag out for the default, public")
	}
	d := meshmon.Device{
		Name:     name,
		Address:  c.String("address"),
		Checks:   c.StringSlice("checks"),
		Interval: meshmon.Duration(c.Duration("interval")),
		Timeout:  meshmon.Duration(c.Duration("probe-timeout")),
		Retries:  c.Int("retries"),
		Parent:   c.String("parent"),
	}
	if d.Has(meshmon.CheckSNMP) {
		s := &meshmon.SNMP{
			Version:      c.String("snmp-version"),
			Port:         c.Int("snmp-port"),
			Community:    c.String("community"),
			User:         c.String("v3-user"),
			AuthProtocol: strings.ToUpper(c.String("auth-proto")),
			AuthPassword: c.String("auth-pass"),
			PrivProtocol: strings.ToUpper(c.String("priv-proto")),
			PrivPassword: c.String("priv-pass"),
			ContextName:  c.String("context"),
		}
		if s.Community == "" && s.Version != meshmon.SNMPv3 {
			s.Community = "public"
		}
		d.SNMP = s
	}
	return d, d.Validate()
}

func deviceAdd(c *cli.Context) error {
	name, err := nameArg(c, "device name")
	if err != nil {
		return err
	}
	d, err := deviceFromFlags(c, name)
	if err != nil {
		return err
	}
	ch, err := ask(c, withInventory, func(ctx context.Context, inv *bus.Inventory) (meshmon.DeviceChange, error) {
		return inv.Add(ctx, d, c.Bool("replace"))
	})
	if errors.Is(err, bus.ErrDeviceExists) {
		return fmt.Errorf("device %s already exists; use --replace to change it", name)
	}
	if err != nil {
		return err
	}
	return show(c, ch, ch.WriteText)
}

// withInventory connects to the peer, opens the inventory (of --site's,
// from central, when given) and runs fn within one request timeout.
func withInventory(c *cli.Context, fn func(ctx context.Context, inv *bus.Inventory) error) error {
	return withInventorySite(c, c.String("site"), fn)
}

// withInventorySite is withInventory for site's inventory, reached from
// central through the site's JetStream domain across its leaf link ("":
// the inventory of the peer connected to).
func withInventorySite(c *cli.Context, site string, fn func(ctx context.Context, inv *bus.Inventory) error) error {
	if site != "" {
		if err := meshmon.ValidateName("site", site); err != nil {
			return err
		}
	}
	cl, err := connectSite(c, site)
	if err != nil {
		return err
	}
	open := bus.OpenInventory
	if site != "" {
		open = func(ctx context.Context, js jetstream.JetStream) (*bus.Inventory, error) {
			return bus.OpenSiteInventory(ctx, js, site, c.Duration("timeout"))
		}
	}
	return cl.run(c, func(ctx context.Context, cl *client) error {
		inv, err := open(ctx, cl.js)
		if err != nil {
			return err
		}
		return fn(ctx, inv)
	})
}

func deviceList(c *cli.Context) error {
	devs, err := ask(c, withInventory, func(ctx context.Context, inv *bus.Inventory) ([]meshmon.Device, error) { return inv.List(ctx) })
	if err != nil {
		return err
	}
	out := make([]meshmon.Device, len(devs))
	for i, d := range devs {
		out[i] = shown(c, d)
	}
	return show(c, out, func(w io.Writer) error { return meshmon.WriteDevices(w, devs) })
}

func deviceShow(c *cli.Context) error {
	name, err := nameArg(c, "device name")
	if err != nil {
		return err
	}
	d, err := ask(c, withInventory, func(ctx context.Context, inv *bus.Inventory) (meshmon.Device, error) { return inv.Get(ctx, name) })
	if errors.Is(err, bus.ErrDeviceNotFound) {
		return fmt.Errorf("device %s not found", name)
	}
	if err != nil {
		return err
	}
	return show(c, shown(c, d), d.WriteText)
}

func deviceRm(c *cli.Context) error {
	name, err := nameArg(c, "device name")
	if err != nil {
		return err
	}
	err = withInventory(c, func(ctx context.Context, inv *bus.Inventory) error { return inv.Delete(ctx, name) })
	if errors.Is(err, bus.ErrDeviceNotFound) {
		return fmt.Errorf("device %s not found", name)
	} else if err != nil {
		return err
	}
	ch := meshmon.NewDeviceChange("removed", meshmon.Device{Name: name})
	return show(c, ch, ch.WriteText)
}

// siteFlag reaches a site's inventory from central.
func siteFlag() cli.Flag {
	return &cli.StringFlag{Name: "site", Usage: "from central: the site whose inventory to use, reached over its leaf link (admin credentials)"}
}

func showSecretsFlag() cli.Flag {
	return &cli.BoolFlag{Name: "show-secrets", Usage: "print SNMP communities and v3 passwords as stored (for 'device import')"}
}

// shown is d as a command prints it: secrets masked unless --show-secrets.
func shown(c *cli.Context, d meshmon.Device) meshmon.Device {
	if c.Bool("show-secrets") {
		return d
	}
	return d.Redacted()
}

// deviceImport adds the devices of a JSON file: one device object or a list.
// Every device is checked before any is written.
func deviceImport(c *cli.Context) error {
	devs, err := meshmon.ReadDevices(c.Args().First(), os.Stdin)
	if err != nil {
		return err
	}
	names, err := ask(c, withInventory, func(ctx context.Context, inv *bus.Inventory) ([]string, error) {
		names, err := inv.Import(ctx, devs, c.Bool("replace"))
		if errors.Is(err, bus.ErrDeviceExists) {
			return nil, fmt.Errorf("device %s already exists; use --replace to change it (%d of %d imported)", devs[len(names)].Name, len(names), len(devs))
		}
		if err != nil {
			return nil, fmt.Errorf("%w (%d of %d imported)", err, len(names), len(devs))
		}
		return names, nil
	})
	if err != nil {
		return err
	}
	return output(c, struct {
		Result string   `json:"result"`
		Names  []string `json:"names"`
	}{"imported", names}, "%d devices imported\n", len(names))
}
