package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/meshmon/meshmon/internal/cliflags"
)

// checkGlobals validates the global flags before any command runs, so a bad
// --log-level fails the same way whatever the command.
func checkGlobals(c *cli.Context) error {
	if _, err := newLogger(c, nil); err != nil {
		return err
	}
	if _, err := cliflags.Secret(c, "password"); err != nil {
		return err
	}
	if d := c.Duration("timeout"); d <= 0 {
		return fmt.Errorf("--timeout %s: must be more than 0 (how long to wait for the peer)", d)
	}
	return nil
}
