package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/urfave/cli/v2"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/cliflags"
)

// Global flags: where the peer is and who we are to it.
func globalFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "server", Aliases: []string{"s"}, Value: "nats://127.0.0.1:4222", EnvVars: []string{"MESHMON_SERVER"}, Usage: "peer URL(s), comma separated"},
		&cli.StringFlag{Name: "user", EnvVars: []string{"MESHMON_USER"}, Usage: "user name"},
		&cli.StringFlag{Name: "password", EnvVars: []string{"MESHMON_PASSWORD"}, Usage: "password (prefer --password-file: argv is readable by every local user)"},
		&cli.StringFlag{Name: "password-file", EnvVars: []string{"MESHMON_PASSWORD_FILE"}, Usage: "file holding the password"},
		&cli.StringFlag{Name: "tlsca", EnvVars: []string{"MESHMON_TLSCA"}, Usage: "the mesh's CA (PEM) to verify the peer's certificate against ('meshmon tls ca' makes it)"},
		&cli.StringFlag{Name: "nkey", EnvVars: []string{"MESHMON_NKEY"}, Usage: "file holding a user nkey seed"},
		&cli.StringFlag{Name: "creds", EnvVars: []string{"MESHMON_CREDS"}, Usage: "NATS credentials file"},
		&cli.DurationFlag{Name: "timeout", Value: 5 * time.Second, EnvVars: []string{"MESHMON_TIMEOUT"}, Usage: "how long to wait for the peer"},
		&cli.StringFlag{Name: "log-level", Value: "info", EnvVars: []string{"MESHMON_LOG_LEVEL"}, Usage: "debug, info, warn or error"},
		&cli.StringFlag{Name: "log-format", Value: "text", EnvVars: []string{"MESHMON_LOG_FORMAT"}, Usage: "text or json"},
	}
}

func jsonFlag() cli.Flag {
	return &cli.BoolFlag{Name: "json", Usage: "print data as JSON"}
}

// connConfig is the connection the global flags describe.
func connConfig(c *cli.Context, name string) bus.ConnConfig {
	// (A file that cannot be read leaves the password empty, and Validate
	// names what is missing; checkGlobals reports the file.)
	pw, _ := cliflags.Secret(c, "password")
	return bus.ConnConfig{
		URL:          c.String("server"),
		User:         c.String("user"),
		Password:     pw,
		NKeySeedFile: c.String("nkey"),
		CredsFile:    c.String("creds"),
		CAFile:       c.String("tlsca"),
		Name:         name,
	}
}

// client is a connection for a short CLI command: it fails fast when no
// peer answers.
type client struct {
	nc *nats.Conn
	js jetstream.JetStream
}

func connect(c *cli.Context) (*client, error) { return connectSite(c, "") }

// connectSite connects for site's JetStream domain, from central ("": the
// peer's own).
func connectSite(c *cli.Context, site string) (*client, error) {
	ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
	defer cancel()
	nc, js, err := bus.ConnectDomain(ctx, connConfig(c, "meshmon-cli"), site) // which validates it
	if err != nil {
		return nil, err
	}
	return &client{nc: nc, js: js}, nil
}

func (cl *client) Close() { cl.nc.Close() }

// withPeer connects to the peer and runs fn within one request timeout.
func withPeer(c *cli.Context, fn func(ctx context.Context, cl *client) error) error {
	cl, err := connect(c)
	if err != nil {
		return err
	}
	return cl.run(c, fn)
}

// run runs fn within one request timeout, then closes the connection.
func (cl *client) run(c *cli.Context, fn func(ctx context.Context, cl *client) error) error {
	defer cl.Close()
	ctx, cancel := opCtx(c)
	defer cancel()
	return fn(ctx, cl)
}

// nameArg returns the first argument (NAME, TENANT), validated as the name
// of what.
func nameArg(c *cli.Context, what string) (string, error) {
	name := c.Args().First()
	return name, meshmon.ValidateName(what, name)
}

// madeWait bounds the wait for a tenant's store that central makes when it
// starts serving the tenant (its alarm and notification buckets), which a
// tenant's admin may not make: at a tenant's first use, a few seconds
// after its creation.
const madeWait = 30 * time.Second

// madeCtx bounds a wait for such a store: the request timeout, or
// madeWait when longer.
func madeCtx(c *cli.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.Context, max(c.Duration("timeout"), madeWait))
}

// afterMade waits for a store central makes (wait, within madeCtx), then
// runs fn within one request timeout.
func afterMade(c *cli.Context, wait, fn func(context.Context) error) error {
	wctx, cancel := madeCtx(c)
	defer cancel()
	if err := wait(wctx); err != nil {
		return err
	}
	ctx, cancel := opCtx(c)
	defer cancel()
	return fn(ctx)
}

// opCtx bounds one request to the peer.
func opCtx(c *cli.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.Context, c.Duration("timeout"))
}

func newLogger(c *cli.Context, w io.Writer) (*slog.Logger, error) {
	return cliflags.Logger(w, c.String("log-level"), c.String("log-format"))
}

// readSecret reads a secret from a file, without its trailing newline.
var readSecret = cliflags.ReadSecret

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// output prints v as JSON with --json, else the text of format.
func output(c *cli.Context, v any, format string, args ...any) error {
	if c.Bool("json") {
		return printJSON(os.Stdout, v)
	}
	_, err := fmt.Printf(format, args...)
	return err
}

// show prints v as JSON with --json, else as text writes it.
func show(c *cli.Context, v any, text func(io.Writer) error) error {
	if c.Bool("json") {
		return printJSON(os.Stdout, v)
	}
	return text(os.Stdout)
}

// showList is show for a list: with --json an empty one is [], not null.
func showList[T any](c *cli.Context, vs []T, text func(io.Writer, []T) error) error {
	if c.Bool("json") && vs == nil {
		vs = []T{}
	}
	return show(c, vs, func(w io.Writer) error { return text(w, vs) })
}

// ask runs fn within with (withPeer, withCentral, withInventory,
// withNotify: a connection and one request timeout) and returns what fn
// read.
func ask[S, T any](c *cli.Context, with func(*cli.Context, func(context.Context, S) error) error, fn func(context.Context, S) (T, error)) (T, error) {
	var v T
	err := with(c, func(ctx context.Context, s S) (err error) {
		v, err = fn(ctx, s)
		return err
	})
	return v, err
}

// configFlag is --config FILE: a YAML file whose keys are the command's flag
// names. Flags given on the command line or in the environment win.
func configFlag() cli.Flag {
	return &cli.StringFlag{Name: "config", EnvVars: []string{"MESHMON_CONFIG"}, Usage: "YAML file whose keys are this command's flag names"}
}
