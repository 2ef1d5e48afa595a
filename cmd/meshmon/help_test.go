package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// TestHelpOneDefault runs --help of every command and finds no flag that
// prints two defaults ("(default 2s) (default: 0s)"): a flag whose default
// is not its zero value says it in DefaultText, once.
func TestHelpOneDefault(t *testing.T) {
	twice := regexp.MustCompile(`\(default[: ].*\(default[: ]`)
	var walk func(path []string, cmds []*cli.Command)
	check := func(path []string) {
		app := newApp()
		var out bytes.Buffer
		app.Writer, app.ErrWriter = &out, &out
		args := append(append([]string{"meshmon"}, path...), "--help")
		if err := app.Run(args); err != nil {
			t.Errorf("%s: %v", strings.Join(args, " "), err)
		}
		for _, line := range strings.Split(out.String(), "\n") {
			if twice.MatchString(line) {
				t.Errorf("%s: two defaults: %s", strings.Join(args, " "), strings.TrimSpace(line))
			}
		}
	}
	walk = func(path []string, cmds []*cli.Command) {
		for _, c := range cmds {
			p := append(append([]string{}, path...), c.Name)
			check(p)
			walk(p, c.Subcommands)
		}
	}
	check(nil)
	walk(nil, newApp().Commands)
}
