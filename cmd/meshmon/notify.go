package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus/notifybus"
	"github.com/meshmon/meshmon/notify"
)

func notifyCommand() *cli.Command {
	replace := &cli.BoolFlag{Name: "replace", Usage: "replace it if it exists"}
	return &cli.Command{
		Name:  "notify",
		Usage: "notification channels, rules and the delivery log (at central, as a tenant admin)",
		Subcommands: []*cli.Command{
			{
				Name:  "channel",
				Usage: "where notifications go: webhook, slack, teams or email",
				Subcommands: []*cli.Command{
					{
						Name: "add", Usage: "add a channel (secrets from --secret-file, never argv)", ArgsUsage: "NAME",
						Flags: append(channelFlags(), replace, jsonFlag()), Action: notifyChannelAdd,
					},
					{Name: "list", Usage: "list the channels (secrets never shown)", Flags: []cli.Flag{jsonFlag()}, Action: notifyChannelList},
					{Name: "rm", Usage: "remove a channel and its secret", ArgsUsage: "NAME", Flags: []cli.Flag{jsonFlag()}, Action: notifyChannelRm},
					{
						Name: "test", Usage: "send a test notification to a channel now", ArgsUsage: "NAME",
						Flags: []cli.Flag{&cli.StringFlag{Name: "tenant", Usage: "the tenant named in the test message"}, jsonFlag()}, Action: notifyChannelTest,
					},
				},
			},
			{
				Name:  "rule",
				Usage: "which alarms page which channels, and the escalation",
				Subcommands: []*cli.Command{
					{Name: "add", Usage: "add a rule", ArgsUsage: "NAME", Flags: append(ruleFlags(), replace, jsonFlag()), Action: notifyRuleAdd},
					{Name: "list", Usage: "list the rules", Flags: []cli.Flag{jsonFlag()}, Action: notifyRuleList},
					{Name: "rm", Usage: "remove a rule", ArgsUsage: "NAME", Flags: []cli.Flag{jsonFlag()}, Action: notifyRuleRm},
				},
			},
			{
				Name: "log", Usage: "the delivery log: every attempt, oldest first",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "channel", Usage: "only this channel"},
					&cli.IntFlag{Name: "limit", Value: 50, Usage: "the last this many attempts (0: all)"},
					jsonFlag(),
				},
				Action: notifyLog,
			},
		},
	}
}

func channelFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "type", Required: true, Usage: "webhook, slack (Slack, Mattermost, Discord's /slack URL), teams or email (required)"},
		&cli.StringFlag{Name: "url", Usage: "webhook: the URL to POST to"},
		&cli.StringFlag{Name: "secret-file", Usage: "file holding the secret: webhook HMAC key; slack/teams: the webhook URL; email: the SMTP password"},
		&cli.StringFlag{Name: "smtp", Usage: "email: SMTP server host:port (587: submission with STARTTLS)"},
		&cli.StringFlag{Name: "from", Usage: "email: sender address"},
		&cli.StringSliceFlag{Name: "to", Usage: "email: recipient addresses"},
		&cli.StringFlag{Name: "smtp-user", Usage: "email: user to authenticate as (password from --secret-file)"},
		&cli.StringFlag{Name: "smtp-ca", Usage: "email: CA file (PEM) to verify the SMTP server against instead of the system's"},
		&cli.BoolFlag{Name: "allow-plaintext", Usage: "email: send without TLS when the server offers no STARTTLS; webhook, slack, teams: allow an http:// URL (warns)"},
		&cli.Float64Flag{Name: "rate-per-minute", Value: 6, Usage: "messages a minute in the long run (0: no limit); what is over waits and goes as a summary"},
		&cli.IntFlag{Name: "burst", Value: 10, Usage: "messages at once"},
	}
}

func ruleFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "severity", Usage: "match these severities (" + strings.Join(notify.Severities, ", ") + "); none: any"},
		&cli.StringSliceFlag{Name: "site", Usage: "match these sites; none: any"},
		&cli.StringSliceFlag{Name: "device", Usage: "match these devices; none: any"},
		&cli.StringSliceFlag{Name: "kind", Usage: "match these kinds (node_down, if_down, ...); none: any"},
		&cli.StringSliceFlag{Name: "channel", Usage: "channels to page (required)"},
		&cli.StringSliceFlag{Name: "escalate", Usage: "AFTER=CHANNEL: page CHANNEL too when the alarm is unacknowledged AFTER (15m) its page; repeat in order"},
		&cli.BoolFlag{Name: "actions", Usage: "page the NOC's acknowledgements, unacknowledgements and comments of the matching alarms too"},
		&cli.DurationFlag{Name: "settle", Usage: "hold the pages of a device behind a parent this long (0: the default, 30s), so that its parent's alarm can make them symptoms"},
	}
}

// withNotify connects, opens the tenant's notification store as central
// made it (waiting for it up to madeWait) and runs fn within one request
// timeout.
func withNotify(c *cli.Context, fn func(ctx context.Context, st *notifybus.Store) error) error {
	cl, err := connect(c)
	if err != nil {
		return err
	}
	defer cl.Close()
	var st *notifybus.Store
	return afterMade(c, func(ctx context.Context) (err error) {
		st, err = notifybus.OpenMade(ctx, cl.js)
		return err
	}, func(ctx context.Context) error { return fn(ctx, st) })
}

func notifyChannelAdd(c *cli.Context) error {
	name, err := nameArg(c, "channel name")
	if err != nil {
		return err
	}
	ch := notify.Channel{Name: name, Type: c.String("type"), URL: c.String("url"), SMTP: c.String("smtp"), From: c.String("from"),
		To: c.StringSlice("to"), SMTPUser: c.String("smtp-user"), AllowPlaintext: c.Bool("allow-plaintext"),
		RatePerMinute: c.Float64("rate-per-minute"), Burst: c.Int("burst")}
	if f := c.String("smtp-ca"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("--smtp-ca: %w", err)
		}
		ch.SMTPCA = string(b)
	}
	var secret []byte
	if f := c.String("secret-file"); f != "" {
		s, err := readSecret(f)
		if err != nil {
			return fmt.Errorf("--secret-file: %w", err)
		}
		warnLoosePerms(f)
		secret = []byte(s)
	}
	if err := ch.Validate(); err != nil {
		return err
	}
	if ch.AllowPlaintext {
		fmt.Fprintf(os.Stderr, "meshmon: warning: channel %s may send without TLS (--allow-plaintext)\n", name)
	}
	return notifyDone(c, "channel", name, "added", func(ctx context.Context, st *notifybus.Store) error {
		return st.PutChannel(ctx, ch, secret, c.Bool("replace"))
	})
}

// warnLoosePerms warns when a secret file is readable by others than
// its owner.
func warnLoosePerms(path string) {
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		fmt.Fprintf(os.Stderr, "meshmon: warning: %s holds a secret and is readable by others (mode %v): chmod 600 it\n", path, fi.Mode().Perm())
	}
}

// notifyDone runs fn on the tenant's notification store (withNotify), then
// says that the channel or rule (what) name was added or removed (verb).
func notifyDone(c *cli.Context, what, name, verb string, fn func(ctx context.Context, st *notifybus.Store) error) error {
	if err := withNotify(c, fn); err != nil {
		return err
	}
	return output(c, map[string]string{"result": verb, what: name}, "%s %s %s\n", what, name, verb)
}

func notifyChannelList(c *cli.Context) error {
	chs, err := ask(c, withNotify, func(ctx context.Context, st *notifybus.Store) ([]notify.ChannelView, error) { return st.Channels(ctx) })
	if err != nil {
		return err
	}
	return showList(c, chs, notify.WriteChannels)
}

func notifyChannelRm(c *cli.Context) error {
	name, err := nameArg(c, "channel name")
	if err != nil {
		return err
	}
	return notifyDone(c, "channel", name, "removed", func(ctx context.Context, st *notifybus.Store) error { return st.DeleteChannel(ctx, name) })
}

func notifyChannelTest(c *cli.Context) error {
	name, err := nameArg(c, "channel name")
	if err != nil {
		return err
	}
	delivery, err := ask(c, withNotify, func(_ context.Context, st *notifybus.Store) (string, error) {
		ctx, cancel := context.WithTimeout(c.Context, 30*time.Second) // a delivery, not a request
		defer cancel()
		// The test is sent from here, the admin's machine, not central:
		// a channel on this machine's loopback is the admin's own to
		// reach (notify.Dialer still refuses link-local addresses).
		return st.Test(ctx, c.String("tenant"), name, &notify.Sender{Reach: notify.Reach{AllowLoopback: true}})
	})
	if err != nil {
		return fmt.Errorf("channel %s: test: %w", name, err)
	}
	return output(c, map[string]string{"result": "delivered", "channel": name, "delivery": delivery},
		"channel %s: test delivered (%s %s)\n", name, notify.HeaderDelivery, delivery)
}

func notifyRuleAdd(c *cli.Context) error {
	name, err := nameArg(c, "rule name")
	if err != nil {
		return err
	}
	steps, err := notify.ParseSteps(c.StringSlice("escalate"))
	if err != nil {
		return fmt.Errorf("--escalate: %w", err)
	}
	r := notify.Rule{Name: name, Severities: c.StringSlice("severity"), Sites: c.StringSlice("site"), Devices: c.StringSlice("device"),
		Kinds: c.StringSlice("kind"), Channels: c.StringSlice("channel"), Actions: c.Bool("actions"), Escalation: steps,
		Settle: c.Duration("settle")}
	if err := r.Validate(nil); err != nil {
		return err
	}
	return notifyDone(c, "rule", name, "added", func(ctx context.Context, st *notifybus.Store) error { return st.PutRule(ctx, r, c.Bool("replace")) })
}

func notifyRuleList(c *cli.Context) error {
	set, err := ask(c, withNotify, func(ctx context.Context, st *notifybus.Store) (notifybus.Settings, error) { return st.Settings(ctx) })
	if err != nil {
		return err
	}
	return showList(c, set.Rules, notify.WriteRules)
}

func notifyRuleRm(c *cli.Context) error {
	name, err := nameArg(c, "rule name")
	if err != nil {
		return err
	}
	return notifyDone(c, "rule", name, "removed", func(ctx context.Context, st *notifybus.Store) error { return st.DeleteRule(ctx, name) })
}

func notifyLog(c *cli.Context) error {
	if ch := c.String("channel"); ch != "" {
		if err := meshmon.ValidateName("channel", ch); err != nil {
			return fmt.Errorf("--channel: %w", err)
		}
	}
	if c.Int("limit") < 0 {
		return errors.New("--limit must not be negative")
	}
	log, err := ask(c, withNotify, func(ctx context.Context, st *notifybus.Store) ([]notifybus.Attempt, error) {
		return st.Log(ctx, c.String("channel"), c.Int("limit"))
	})
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return notifybus.WriteLogJSON(os.Stdout, log)
	}
	return notifybus.WriteLog(os.Stdout, log)
}
