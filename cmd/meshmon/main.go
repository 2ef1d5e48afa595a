// Command meshmon is the whole meshmon product in one binary: peers, pollers,
// the device simulator, the demo and the admin CLI.
package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/meshmon/meshmon/internal/cliflags"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	stop := startProfile()
	err := cliflags.Run(newApp(), os.Args)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "meshmon: "+cliflags.OneLine(err))
		os.Exit(1)
	}
}

func newApp() *cli.App {
	app := &cli.App{
		Name:                 "meshmon",
		Usage:                "a distributed network-monitoring mesh on NATS JetStream",
		Version:              version,
		EnableBashCompletion: true,
		Flags:                globalFlags(),
		Commands: []*cli.Command{
			demoCommand(),
			peerCommand(),
			tlsCommand(),
			pollerCommand(),
			simCommand(),
			initCommand(),
			tenantCommand(),
			siteCommand(),
			deviceCommand(),
			taskCommand(),
			eventsCommand(),
			notifyCommand(),
			alarmsCommand(),
			maintenanceCommand(),
			statusCommand(),
			topologyCommand(),
			benchCommand(),
		},
		Before: checkGlobals,
		// One clear line on stderr and exit 1, from main; no usage dump.
		ExitErrHandler: func(*cli.Context, error) {},
	}
	cliflags.ScriptFriendly(app)
	return app
}
