package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/urfave/cli/v2"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/sim"
)

func simCommand() *cli.Command {
	// The flags set d's fields; simConfig checks and completes it.
	d := sim.DefaultConfig()
	u := d.Users[0]
	return &cli.Command{
		Name:  "sim",
		Usage: "run simulated SNMP agents (v1, v2c, v3) on loopback addresses, with faults on command",
		Description: "Each agent binds its own address from --base-addr on (all of 127.0.0.0/8 is local on Linux)\n" +
			"and answers the system group, ifTable and ifXTable. Each has a socket of its own, so the open-files limit caps\n" +
			"the agents, unless --shared-socket serves them all from one (Linux). With --control, faults can be injected over HTTP:\n" +
			"  curl -X POST http://ADDR/agents/sim-00001/down   (also /up, /reboot, /if/2/down, /if/2/up,\n" +
			"  /delay?d=500ms, /trap?target=host:port&version=2c; POST /fault injects a random one; GET /agents lists them)",
		Flags: append([]cli.Flag{
			&cli.IntFlag{Name: "agents", Value: d.Agents, Destination: &d.Agents, Usage: "number of agents"},
			&cli.StringFlag{Name: "base-addr", Value: d.BaseAddr.String(), Usage: "IPv4 address of the first agent; the others follow"},
			&cli.IntFlag{Name: "port", Value: d.Port, Destination: &d.Port, Usage: "UDP port of every agent; 0 lets the kernel choose one per agent (one for all with --shared-socket)"},
			&cli.BoolFlag{Name: "shared-socket", Destination: &d.SharedSocket, Usage: fmt.Sprintf("serve every agent from one UDP socket on the wildcard address and --port, "+
				"answering from each agent's address: no open-files limit, up to %d agents (Linux; no other socket may hold the port on any address, "+
				"and addresses of no agent stay silent instead of port unreachable)", sim.MaxSharedAgents)},
			&cli.StringFlag{Name: "name-prefix", Value: d.NamePrefix, Destination: &d.NamePrefix, Usage: "device names are <prefix>-00001, ..."},
			&cli.StringFlag{Name: "versions", Value: strings.Join(d.Versions, ","), Usage: "SNMP versions served, comma separated: 1, 2c, 3"},
			&cli.StringFlag{Name: "community", Value: d.Community, Destination: &d.Community, Usage: "v1/v2c community (and of the traps)"},
			&cli.StringFlag{Name: "v3-user", Value: u.Name, Usage: "SNMPv3 USM user"},
			&cli.StringFlag{Name: "v3-auth-proto", Value: u.AuthProtocol, Usage: "v3 auth protocol: " + strings.Join(meshmon.AuthProtocols, ", ") + ", or empty for noAuthNoPriv"},
			&cli.StringFlag{Name: "v3-auth-pass", Value: u.AuthPassword, Usage: "v3 auth pass phrase"},
			&cli.StringFlag{Name: "v3-priv-proto", Value: u.PrivProtocol, Usage: "v3 privacy protocol: " + strings.Join(meshmon.PrivProtocols, ", ") + ", or empty for authNoPriv"},
			&cli.StringFlag{Name: "v3-priv-pass", Value: u.PrivPassword, Usage: "v3 privacy pass phrase"},
			&cli.IntFlag{Name: "interfaces", Value: d.Interfaces, Destination: &d.Interfaces, Usage: "interfaces per agent"},
			&cli.StringFlag{Name: "topology", Destination: &d.Topology, Usage: "link the agents in their LLDP (and, every third agent, CDP) tables: ring or tree (none by default)"},
			&cli.StringFlag{Name: "trap-target", Destination: &d.TrapTarget, Usage: "host:port that receives the traps of random faults"},
			&cli.StringFlag{Name: "trap-version", Value: d.TrapVersion, Destination: &d.TrapVersion, Usage: "version of those traps: 1, 2c or 3 (as the --v3-user)"},
			&cli.DurationFlag{Name: "faults-every", Usage: "inject a random fault this often (0: never)"},
			&cli.DurationFlag{Name: "down-for", Value: d.DownFor, Destination: &d.DownFor, Usage: "how long a random 'device down' fault lasts"},
			&cli.StringFlag{Name: "control", Usage: "serve the fault-injection HTTP API on this loopback address, e.g. 127.0.0.1:0"},
			&cli.BoolFlag{Name: "add-devices", Usage: "add every agent to the inventory of the site peer at --server (waits for the peer; replaces devices of the same names)"},
			&cli.DurationFlag{Name: "interval", Value: time.Minute, Usage: "poll interval of the devices --add-devices adds"},
			jsonFlag(),
		}, metricsFlags(func(n string) []string { return []string{"MESHMON_SIM_" + n} }, false)...),
		Action: func(c *cli.Context) error { return simRun(c, &d) },
	}
}

// simConfig checks and completes cfg, which the flags set.
func simConfig(c *cli.Context, cfg *sim.Config) error {
	base, err := netip.ParseAddr(c.String("base-addr"))
	if err != nil {
		return fmt.Errorf("--base-addr %q: not an IP address", c.String("base-addr"))
	}
	cfg.BaseAddr = base
	cfg.Versions = sim.SplitVersions(c.String("versions"))
	cfg.Users = []sim.V3User{sim.NewV3User(c.String("v3-user"), c.String("v3-auth-proto"), c.String("v3-auth-pass"),
		c.String("v3-priv-proto"), c.String("v3-priv-pass"))}
	if c.Duration("faults-every") < 0 {
		return fmt.Errorf("--faults-every %s must not be negative", c.Duration("faults-every"))
	}
	return cfg.Validate()
}

func simRun(c *cli.Context, cfg *sim.Config) error {
	if err := simConfig(c, cfg); err != nil {
		return err
	}
	if err := checkMetrics(c, false); err != nil {
		return err
	}
	log, err := newLogger(c, os.Stderr)
	if err != nil {
		return err
	}
	cfg.Logger = log
	var ln net.Listener
	if addr := c.String("control"); addr != "" {
		if ln, err = sim.ListenControl(addr); err != nil {
			return err
		}
		defer ln.Close()
	}

	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()

	s, err := sim.New(*cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.Start(ctx); err != nil {
		return err
	}
	ms, err := serveMetrics(c, nil, log, s.Collectors()...)
	if err != nil {
		return err
	}
	defer ms.Close()
	if err := s.WriteAgents(os.Stdout, c.Bool("json")); err != nil {
		return err
	}
	if c.Bool("add-devices") {
		if err := addSimDevices(ctx, c, s, cfg.Community, log); err != nil {
			return err
		}
	}

	s.Run(ctx, sim.RunOptions{Control: ln, FaultsEvery: c.Duration("faults-every"), Out: os.Stderr, Log: log})
	return nil
}

// addSimDevices puts every agent into the inventory of the site peer the
// global flags name, waiting for the peer to answer and its streams to
// exist (a lab or compose file starts everything at once).
func addSimDevices(ctx context.Context, c *cli.Context, s *sim.Sim, community string, log *slog.Logger) error {
	ccfg := connConfig(c, "meshmon-sim")
	nc, err := bus.Connect(ccfg)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if err := bus.ImportWait(ctx, js, s.Devices(c.Duration("interval"), time.Second, community), log); err != nil || ctx.Err() != nil {
		return err
	}
	log.Info("sim: devices added to the inventory", "devices", len(s.Agents()), "server", ccfg.URL)
	return nil
}
