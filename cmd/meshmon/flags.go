package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/meshmon/meshmon"
)

// sizeValue is a byte size flag that takes units: 10GiB, 512MB, 1048576.
type sizeValue struct{ n int64 }

func (v *sizeValue) Set(s string) error {
	n, err := meshmon.ParseSize(s)
	if err != nil {
		return err
	}
	v.n = n
	return nil
}

func (v *sizeValue) String() string {
	if v == nil {
		return ""
	}
	return meshmon.FormatSize(v.n)
}

// ageValue is a duration flag that also takes days and weeks: 30d, 2w, 12h.
type ageValue struct{ d time.Duration }

func (v *ageValue) Set(s string) error {
	d, err := meshmon.ParseAge(s)
	if err != nil {
		return err
	}
	v.d = d
	return nil
}

func (v *ageValue) String() string {
	if v == nil {
		return ""
	}
	return meshmon.FormatAge(v.d)
}

func sizeFlag(name string, def int64, env []string, usage string) cli.Flag {
	return &cli.GenericFlag{Name: name, Value: &sizeValue{def}, EnvVars: env, Usage: usage + " (bytes, or with a unit: 512MiB, 10GiB, 1TB)"}
}

func ageFlag(name string, def time.Duration, env []string, usage string) cli.Flag {
	return &cli.GenericFlag{Name: name, Value: &ageValue{def}, EnvVars: env, Usage: usage + " (30d, 2w, 12h, 90m)"}
}

// sizeOf and ageOf read a flag made by sizeFlag or ageFlag.
func sizeOf(c *cli.Context, name string) int64 { return c.Generic(name).(*sizeValue).n }

func ageOf(c *cli.Context, name string) time.Duration { return c.Generic(name).(*ageValue).d }

// scriptFriendly makes every command of app fail the same way on bad
// usage: one line on stderr with a hint to --help, exit 1, nothing on
// stdout; and a command that takes no arguments refuses extra ones.
func scriptFriendly(app *cli.App) {
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

// checkGlobals validates the global flags before any command runs, so a bad
// --log-level fails the same way whatever the command.
func checkGlobals(c *cli.Context) error {
	if _, err := newLogger(c, nil); err != nil {
		return err
	}
	if f := c.String("password-file"); f != "" {
		if c.String("password") != "" {
			return fmt.Errorf("--password and --password-file are alternatives; give one")
		}
		if _, err := readSecret(f); err != nil {
			return fmt.Errorf("--password-file: %w", err)
		}
	}
	if d := c.Duration("timeout"); d <= 0 {
		return fmt.Errorf("--timeout %s: must be more than 0 (how long to wait for the peer)", d)
	}
	return nil
}
