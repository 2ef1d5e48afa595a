package cliflags

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
)

// testApp is a command "run" with a --config, a string flag, a size and an
// age flag, and a NAME argument; got receives what the action saw.
func testApp(got *[]string) *cli.App {
	app := &cli.App{Name: "t", Flags: []cli.Flag{&cli.StringFlag{Name: "server"}}, ExitErrHandler: func(*cli.Context, error) {}}
	app.Commands = []*cli.Command{{
		Name: "run", ArgsUsage: "NAME",
		Flags: []cli.Flag{&cli.StringFlag{Name: "config"}, &cli.StringFlag{Name: "site"}, &cli.BoolFlag{Name: "force"},
			SizeFlag("max-bytes", 1<<20, nil, "size"), AgeFlag("max-age", time.Hour, nil, "age")},
		Action: func(c *cli.Context) error {
			if err := ApplyConfig(c); err != nil {
				return err
			}
			*got = []string{c.String("server"), c.String("site"), fmt.Sprint(SizeOf(c, "max-bytes")), AgeOf(c, "max-age").String(), strings.Join(c.Args().Slice(), ",")}
			return nil
		},
	}, {Name: "noargs", Action: func(*cli.Context) error { return nil }},
		{Name: "get", ArgsUsage: "ADDRESS OID...", Action: func(*cli.Context) error { return nil }},
		{Name: "creds", ArgsUsage: "[TENANT]", Action: func(*cli.Context) error { return nil }},
		{Name: "comment", ArgsUsage: "ID TEXT", Action: func(*cli.Context) error { return nil }},
		{Name: "walk", Flags: []cli.Flag{&cli.StringFlag{Name: "site", Required: true, Usage: "the site that walks (required)"}}, Action: func(*cli.Context) error { return nil }}}
	ScriptFriendly(app)
	return app
}

// TestCLIFlags: --config fills the flags the command line left unset,
// names unknown keys; positional arguments may come before flags; sizes
// and ages take units; a command without arguments refuses some.
func TestCLIFlags(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(cfg, []byte("site: paris\nserver: nats://x:4222\nmax-age: 2d\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var got []string
	app := testApp(&got)
	args := []string{"t", "run", "r1", "--config", cfg, "--max-bytes", "2MiB", "--site", "lyon", "--force"}
	in := Interspersed(app, args)
	if want := []string{"t", "run", "--config", cfg, "--max-bytes", "2MiB", "--site", "lyon", "--force", "--", "r1"}; !slices.Equal(in, want) {
		t.Fatalf("Interspersed: %q, want %q", in, want)
	}
	if err := app.Run(in); err != nil {
		t.Fatal(err)
	}
	if want := []string{"nats://x:4222", "lyon", "2097152", "48h0m0s", "r1"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}

	if err := os.WriteFile(cfg, []byte("sitee: paris\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := testApp(&got).Run([]string{"t", "run", "--config", cfg, "r1"})
	if err == nil || !strings.Contains(err.Error(), `line 1: unknown key "sitee"`) {
		t.Errorf("unknown key: %v", err)
	}
	err = testApp(&got).Run([]string{"t", "run", "--max-bytes", "12 parsecs"})
	if err == nil || !strings.Contains(err.Error(), "(see 't run --help')") {
		t.Errorf("bad size: %v, want a usage error with the hint", err)
	}
	err = testApp(&got).Run([]string{"t", "noargs", "x"})
	if err == nil || !strings.Contains(err.Error(), `'t noargs' takes no arguments; got "x"`) {
		t.Errorf("extra argument: %v", err)
	}
	if err := UnknownCommand(testApp(&got), []string{"t", "ping"}); err == nil || !strings.Contains(err.Error(), "'t ping' is not a command; commands are run, noargs, get, creds, comment, walk") {
		t.Errorf("unknown command: %v", err)
	}
}

// TestArgs: a command takes the arguments its ArgsUsage names, and says
// which when it gets others; a required flag missing is named with what it
// is for.
func TestArgs(t *testing.T) {
	tests := []struct {
		args []string
		want string // "" for no error
	}{
		{[]string{"run", "r1"}, ""},
		{[]string{"run"}, "'t run' takes one argument, the t name; got 0 (see 't run --help')"},
		{[]string{"run", "r1", "r2"}, "'t run' takes one argument, the t name; got 2"},
		{[]string{"get", "192.0.2.1", "1.3.6", "1.3.7"}, ""},
		{[]string{"get", "192.0.2.1"}, "'t get' takes two arguments or more, ADDRESS OID...; got 1"},
		{[]string{"creds"}, ""},
		{[]string{"creds", "a", "b"}, "'t creds' takes at most one argument, [TENANT]; got 2"},
		{[]string{"comment", "a1", "looked at it"}, ""},
		{[]string{"comment", "a1"}, "'t comment' takes two arguments, ID TEXT; got 1"},
		{[]string{"noargs", "x", "y"}, `'t noargs' takes no arguments; got "x y"`},
		{[]string{"walk"}, "--site is required: the site that walks (see 't walk --help')"},
		{[]string{"walk", "--site", "paris"}, ""},
	}
	for _, tt := range tests {
		var got []string
		err := testApp(&got).Run(append([]string{"t"}, tt.args...))
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%q: %v, want no error", tt.args, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%q: %v, want one with %q", tt.args, err, tt.want)
		}
	}
}

// TestRequired: a required flag without a value is named with where it
// may come from: the command line, its environment variable, --config.
func TestRequired(t *testing.T) {
	var err error
	app := &cli.App{Name: "t", ExitErrHandler: func(*cli.Context, error) {}, Commands: []*cli.Command{{
		Name:  "run",
		Flags: []cli.Flag{&cli.StringFlag{Name: "data-dir", EnvVars: []string{"T_DATA_DIR"}}, &cli.StringFlag{Name: "site"}},
		Action: func(c *cli.Context) error {
			err = Required(c, "data-dir", "site")
			return nil
		},
	}}}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"t", "run"}, `--data-dir is required (flag, T_DATA_DIR, or key "data-dir" in --config)`},
		{[]string{"t", "run", "--data-dir", "/d"}, `--site is required (flag, or key "site" in --config)`},
		{[]string{"t", "run", "--data-dir", "/d", "--site", "paris"}, ""},
	} {
		if runErr := app.Run(tt.args); runErr != nil {
			t.Fatal(runErr)
		}
		if got := fmt.Sprint(err); tt.want == "" && err != nil || tt.want != "" && got != tt.want {
			t.Errorf("%q: %v, want %q", tt.args, err, tt.want)
		}
	}
}

// TestOneLine: an error of several lines prints on one, and an exit error
// without a message as "failed".
func TestOneLine(t *testing.T) {
	if got := OneLine(errors.New("stream EVENTS:\nno leader\r\n")); got != "stream EVENTS: no leader  " {
		t.Errorf("OneLine: %q", got)
	}
	if got := OneLine(cli.Exit("", 1)); got != "failed" {
		t.Errorf("OneLine of an empty exit: %q, want failed", got)
	}
}
