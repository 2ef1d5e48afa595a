// Command meshmon is the whole meshmon product in one binary: peers, pollers,
// the device simulator, the demo and the admin CLI.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/meshmon/meshmon/internal/cliflags"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	app := newApp()
	err := cliflags.UnknownCommand(app, os.Args)
	if err == nil {
		err = app.Run(cliflags.Interspersed(app, os.Args))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "meshmon: "+oneLine(err))
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

// oneLine flattens an error to a single line for stderr.
func oneLine(err error) string {
	var ec cli.ExitCoder
	if errors.As(err, &ec) && ec.Error() == "" {
		return "failed"
	}
	s := []rune(err.Error())
	for i, r := range s {
		if r == '\n' || r == '\r' {
			s[i] = ' '
		}
	}
	return string(s)
}
