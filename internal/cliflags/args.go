package cliflags

import (
	"fmt"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// Interspersed moves the positional arguments of a leaf command behind its
// flags, so `meshmon device add r1 --address 192.0.2.1` works as well as
// `meshmon device add --address 192.0.2.1 r1`. urfave/cli v2 stops reading
// flags at the first positional argument; operators do not expect that.
func Interspersed(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	// Walk global flags and command names down to the leaf command.
	cmds, flags := app.Commands, app.Flags
	i := 1
	var leaf *cli.Command
	for i < len(args) {
		a := args[i]
		if a == "--" {
			return args
		}
		if strings.HasPrefix(a, "-") {
			i += flagWidth(flags, a)
			continue
		}
		var next *cli.Command
		for _, c := range cmds {
			if c.HasName(a) {
				next = c
			}
		}
		if next == nil {
			break
		}
		leaf, cmds, flags = next, next.Subcommands, next.Flags
		i++
	}
	if leaf == nil || len(leaf.Subcommands) > 0 || i >= len(args) {
		return args
	}
	var named, positional []string
	for j := i; j < len(args); {
		a := args[j]
		if a == "--" {
			positional = append(positional, args[j+1:]...)
			break
		}
		if strings.HasPrefix(a, "-") && a != "-" {
			w := min(flagWidth(flags, a), len(args)-j)
			named = append(named, args[j:j+w]...)
			j += w
			continue
		}
		positional = append(positional, a)
		j++
	}
	out := append(append([]string{}, args[:i]...), named...)
	if len(positional) > 0 {
		out = append(append(out, "--"), positional...)
	}
	return out
}

// flagWidth is how many arguments a flag token takes: 1 for booleans and
// --flag=value, 2 for a flag followed by its value.
func flagWidth(flags []cli.Flag, tok string) int {
	name := strings.TrimLeft(tok, "-")
	if strings.Contains(name, "=") {
		return 1
	}
	for _, f := range flags {
		for _, n := range f.Names() {
			if n != name {
				continue
			}
			if _, ok := f.(*cli.BoolFlag); ok {
				return 1
			}
			if n == "help" || n == "h" {
				return 1
			}
			return 2
		}
	}
	if name == "help" || name == "h" || name == "version" || name == "v" {
		return 1
	}
	return 1 // unknown flag: let the parser report it
}

// knownFlag reports whether tok (-name, --name or --name=value) is one of
// flags, or help.
func knownFlag(flags []cli.Flag, tok string) bool {
	name, _, _ := strings.Cut(strings.TrimLeft(tok, "-"), "=")
	if name == "help" || name == "h" {
		return true
	}
	for _, f := range flags {
		if slices.Contains(f.Names(), name) {
			return true
		}
	}
	return false
}

// UnknownCommand returns an error naming the first word of args that should
// be a command and is none (urfave/cli v2 would say "No help topic"), or a
// flag given before a command that it is not a flag of (urfave/cli v2
// would take the flag's value for the command).
func UnknownCommand(app *cli.App, args []string) error {
	cmds, flags, path := app.Commands, app.Flags, app.Name
	for i := 1; i < len(args); {
		a := args[i]
		if a == "--" {
			return nil
		}
		if strings.HasPrefix(a, "-") && a != "-" {
			if len(cmds) > 0 && !knownFlag(flags, a) && !(path == app.Name && (a == "--version" || a == "-v")) {
				name, _, _ := strings.Cut(a, "=")
				return fmt.Errorf("'%s' has no flag %s; a command's flags go after it (see '%s --help')", path, name, path)
			}
			i += flagWidth(flags, a)
			continue
		}
		if len(cmds) == 0 || a == "help" || a == "h" {
			return nil
		}
		var next *cli.Command
		for _, c := range cmds {
			if c.HasName(a) {
				next = c
			}
		}
		if next == nil {
			names := make([]string, 0, len(cmds))
			for _, c := range cmds {
				if !c.Hidden {
					names = append(names, c.Name)
				}
			}
			return fmt.Errorf("'%s %s' is not a command; commands are %s (see '%s --help')", path, a, strings.Join(names, ", "), path)
		}
		cmds, flags, path = next.Subcommands, next.Flags, path+" "+next.Name
		i++
	}
	return nil
}
