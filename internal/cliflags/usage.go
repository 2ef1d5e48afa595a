package cliflags

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

// ScriptFriendly makes every command of app fail the same way on bad
// usage: one line on stderr with a hint to --help, exit 1, nothing on
// stdout. Before its action runs, a command gets as many positional
// arguments as its ArgsUsage names (none without), and a value for each
// flag marked Required, or fails naming what is missing and what it is
// for.
func ScriptFriendly(app *cli.App) {
	onUsage := func(c *cli.Context, err error, _ bool) error {
		return fmt.Errorf("%w (see '%s --help')", err, c.Command.HelpName)
	}
	app.OnUsageError = onUsage
	var walk func(parent string, cmds []*cli.Command)
	walk = func(parent string, cmds []*cli.Command) {
		for _, cmd := range cmds {
			cmd.OnUsageError = onUsage
			// A command may have subcommands and an action of its own
			// ('topology' and 'topology parents').
			walk(cmd.Name, cmd.Subcommands)
			if cmd.Action == nil {
				continue
			}
			action, args, required := cmd.Action, argsOf(parent, cmd.ArgsUsage), takeRequired(cmd)
			cmd.Action = func(c *cli.Context) error {
				if err := args.check(c); err != nil {
					return err
				}
				for _, f := range required {
					if name := f.Names()[0]; !c.IsSet(name) {
						what := strings.Replace(f.GetUsage(), " (required)", "", 1)
						return fmt.Errorf("--%s is required: %s (see '%s --help')", name, what, c.Command.HelpName)
					}
				}
				return action(c)
			}
		}
	}
	walk(app.Name, app.Commands)
}

// takeRequired returns cmd's flags marked Required and takes the mark off:
// urfave/cli's own check would say only 'Required flag "site" not set'.
func takeRequired(cmd *cli.Command) []cli.DocGenerationFlag {
	var out []cli.DocGenerationFlag
	for _, f := range cmd.Flags {
		switch f := f.(type) {
		case *cli.StringFlag:
			if f.Required {
				f.Required = false
				out = append(out, f)
			}
		case *cli.StringSliceFlag:
			if f.Required {
				f.Required = false
				out = append(out, f)
			}
		}
	}
	return out
}

// args is what a command's ArgsUsage asks for: "NAME", "ID TEXT",
// "ADDRESS OID..." (the last one or more), "[TENANT]" (optional).
type args struct {
	min, max int    // max -1: no limit
	what     string // how the error names them
}

// argsOf reads usage, the ArgsUsage of a subcommand of parent. A lone NAME
// is "the <parent> name": 'device show NAME' takes the device name.
func argsOf(parent, usage string) args {
	words := strings.Fields(usage)
	a := args{max: len(words), what: usage}
	for _, w := range words {
		if !strings.HasPrefix(w, "[") {
			a.min++
		}
		if strings.HasSuffix(strings.TrimSuffix(w, "]"), "...") {
			a.max = -1
		}
	}
	if usage == "NAME" {
		a.what = "the " + parent + " name"
	}
	return a
}

// check fails unless c has as many arguments as a asks for, in one line
// that names the command and what it takes.
func (a args) check(c *cli.Context) error {
	n := c.NArg()
	if n >= a.min && (a.max < 0 || n <= a.max) {
		return nil
	}
	name := c.Command.HelpName
	if a.max == 0 {
		return fmt.Errorf("'%s' takes no arguments; got %q (see '%s --help')", name, strings.Join(c.Args().Slice(), " "), name)
	}
	var takes string
	switch {
	case a.min == a.max:
		takes = count(a.min)
	case a.max < 0:
		takes = count(a.min) + " or more"
	case a.min == 0:
		takes = "at most " + count(a.max)
	default:
		takes = fmt.Sprintf("%d to %d arguments", a.min, a.max)
	}
	return fmt.Errorf("'%s' takes %s, %s; got %d (see '%s --help')", name, takes, a.what, n, name)
}

// count is "one argument", "two arguments", "5 arguments".
func count(n int) string {
	switch n {
	case 1:
		return "one argument"
	case 2:
		return "two arguments"
	case 3:
		return "three arguments"
	}
	return fmt.Sprintf("%d arguments", n)
}
