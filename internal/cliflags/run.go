package cliflags

import (
	"errors"
	"fmt"
	"slices"

	"github.com/urfave/cli/v2"
)

// Run runs app on args (os.Args) as meshmon's command line is read: a word
// that is no command, or a flag given before a command it is not of, is
// refused (UnknownCommand), and positional arguments may come among flags
// (Interspersed).
func Run(app *cli.App, args []string) error {
	if err := UnknownCommand(app, args); err != nil {
		return err
	}
	return app.Run(Interspersed(app, args))
}

// OneLine is err flattened to the one line a command prints on stderr; an
// exit error without a message is "failed".
func OneLine(err error) string {
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

// Required fails unless every named flag of the command has a value from
// the command line, the environment or --config; the error says where it
// may come from.
func Required(c *cli.Context, names ...string) error {
	for _, n := range names {
		if c.String(n) != "" {
			continue
		}
		where := "flag"
		for _, f := range c.Command.Flags {
			if ev, ok := f.(cli.DocGenerationFlag); ok && slices.Contains(f.Names(), n) && len(ev.GetEnvVars()) > 0 {
				where += ", " + ev.GetEnvVars()[0]
			}
		}
		return fmt.Errorf("--%s is required (%s, or key %q in --config)", n, where, n)
	}
	return nil
}
