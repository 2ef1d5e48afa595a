package cliflags

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

// ScriptFriendly makes every command of app fail the same way on bad
// usage: one line on stderr with a hint to --help, exit 1, nothing on
// stdout; and a command that takes no arguments refuses extra ones.
func ScriptFriendly(app *cli.App) {
	onUsage := func(c *cli.Context, err error, _ bool) error {
		return fmt.Errorf("%w (see '%s --help')", err, c.Command.HelpName)
	}
	app.OnUsageError = onUsage
	var walk func(cmds []*cli.Command)
	walk = func(cmds []*cli.Command) {
		for _, cmd := range cmds {
			cmd.OnUsageError = onUsage
			if len(cmd.Subcommands) > 0 {
				walk(cmd.Subcommands)
				continue
			}
			if cmd.Action == nil || cmd.ArgsUsage != "" {
				continue
			}
			action := cmd.Action
			cmd.Action = func(c *cli.Context) error {
				if c.NArg() > 0 {
					return fmt.Errorf("'%s' takes no arguments; got %q (see '%s --help')", c.Command.HelpName, strings.Join(c.Args().Slice(), " "), c.Command.HelpName)
				}
				return action(c)
			}
		}
	}
	walk(app.Commands)
}
