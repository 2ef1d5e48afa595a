// Package notify decides who hears about an alarm change and tells them:
// per-tenant rules that match alarms by severity, site, device and kind
// and name the channels to notify and the escalation steps to follow while
// an alarm stays unacknowledged; the channels themselves (a signed JSON
// webhook, email over SMTP with STARTTLS, Slack-compatible and Microsoft
// Teams incoming webhooks); and each channel's rate limit. The decisions
// are pure functions of a change, the rules and the time (Decide,
// Escalate, Batch); bus/notifybus runs them against the ALARMS stream.
package notify

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/alarm"
)

// Channel types.
const (
	TypeWebhook = "webhook" // JSON body, HMAC-SHA256 signature over it
	TypeSlack   = "slack"   // Slack-compatible incoming webhook ({"text": ...}): Slack, Mattermost, Discord's /slack URL
	TypeTeams   = "teams"   // Microsoft Teams incoming webhook (Workflows), an Adaptive Card
	TypeEmail   = "email"   // SMTP, STARTTLS unless AllowPlaintext
)

// Types lists the channel types.
var Types = []string{TypeWebhook, TypeSlack, TypeTeams, TypeEmail}

// Channel is where notifications go. Its secret (a webhook's HMAC key, a
// chat tool's webhook URL, which carries its token, or the SMTP password)
// is not part of it: it is kept apart, readable by admins and the
// notification runner only.
type Channel struct {
	Name string `json:"name"`
	Type string `json:"type"`
	// URL is a webhook's address (TypeWebhook only; a chat tool's URL is
	// its secret).
	URL string `json:"url,omitempty"`

	// Email: the SMTP server (host:port), the sender, the recipients,
	// the user to authenticate as (the password is the secret), the CA
	// (PEM) to verify the server against instead of the system's.
	// AllowPlaintext lets a server without STARTTLS be used in
	// plaintext, and a webhook or chat URL be http://.
	SMTP           string   `json:"smtp,omitempty"`
	From           string   `json:"from,omitempty"`
	To             []string `json:"to,omitempty"`
	SMTPUser       string   `json:"smtp_user,omitempty"`
	SMTPCA         string   `json:"smtp_ca,omitempty"`
	AllowPlaintext bool     `json:"allow_plaintext,omitempty"`

	// RatePerMinute is how many messages the channel takes a minute in
	// the long run, Burst how many at once; 0 is no limit. What is over
	// the limit waits for the next token and then goes as one summary.
	RatePerMinute float64 `json:"rate_per_minute,omitempty"`
	Burst         int     `json:"burst,omitempty"`
}

// NeedsSecret reports whether the channel cannot send without a secret.
func (c Channel) NeedsSecret() bool {
	return c.Type == TypeWebhook || c.Type == TypeSlack || c.Type == TypeTeams || c.SMTPUser != ""
}

// Validate names the first field that breaks a rule.
func (c Channel) Validate() error {
	if err := meshmon.ValidateName("channel", c.Name); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: channel %s: %s", ErrInvalid, c.Name, fmt.Sprintf(format, a...))
	}
	if !slices.Contains(Types, c.Type) {
		return bad("type %q: use one of %s", c.Type, strings.Join(Types, ", "))
	}
	if c.RatePerMinute < 0 || c.Burst < 0 {
		return bad("rate_per_minute and burst must not be negative")
	}
	if c.RatePerMinute > 0 && c.Burst < 1 {
		return bad("burst must be at least 1 with a rate limit")
	}
	switch c.Type {
	case TypeWebhook:
		u, err := url.Parse(c.URL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return bad("url %q: want an https:// URL", c.URL)
		}
		if u.Scheme == "http" && !c.AllowPlaintext {
			return bad("url %q: plaintext http:// only with allow_plaintext (--allow-plaintext); use https://", c.URL)
		}
	case TypeSlack, TypeTeams:
		if c.URL != "" {
			return bad("url: a %s webhook URL carries its token: give it as the secret (a file), not in the channel", c.Type)
		}
	case TypeEmail:
		return c.validateEmail(bad)
	}
	return nil
}

func (c Channel) validateEmail(bad func(string, ...any) error) error {
	if _, port, err := net.SplitHostPort(c.SMTP); err != nil || port == "" {
		return bad("smtp %q: want host:port (587 for submission with STARTTLS)", c.SMTP)
	}
	if !strings.Contains(c.From, "@") || strings.ContainsAny(c.From, "\r\n<> ") {
		return bad("from %q: want an address like meshmon@example.net", c.From)
	}
	if len(c.To) == 0 {
		return bad("to: name at least one recipient")
	}
	for _, t := range c.To {
		if !strings.Contains(t, "@") || strings.ContainsAny(t, "\r\n<> ,") {
			return bad("to %q: want an address like noc@example.net", t)
		}
	}
	return nil
}

// Step is one escalation step: when the alarm is still unacknowledged
// After its page, Channel is notified too.
type Step struct {
	After   time.Duration `json:"after"`
	Channel string        `json:"channel"`
}

// Rule says which alarms page which channels. Each list that is empty
// matches anything; an alarm matches when it matches every list.
type Rule struct {
	Name       string   `json:"name"`
	Severities []string `json:"severities,omitempty"`
	Sites      []string `json:"sites,omitempty"`
	Devices    []string `json:"devices,omitempty"`
	Kinds      []string `json:"kinds,omitempty"`
	Channels   []string `json:"channels"`
	// Escalation: steps in order, each After measured from the page;
	// an acknowledgement, a clear, a maintenance window or the alarm
	// becoming a symptom stops them.
	Escalation []Step `json:"escalation,omitempty"`
	// Actions pages the NOC's acknowledgements, unacknowledgements and
	// comments of the rule's alarms too (a clear by hand pages as any
	// clear does).
	Actions bool `json:"actions,omitempty"`
	// Settle is how long a page of a correlatable alarm (Alarm.Correlatable)
	// waits before it goes, so that the parent's alarm, which may arrive
	// after its children's, can make it a symptom; 0 is DefaultSettle.
	Settle time.Duration `json:"settle,omitempty"`
}

// DefaultSettle is a rule's Settle when it sets none: a parent polled at
// the default 10 s interval, down after 2 polls, is down within about 20 s
// of its children, whose alarms it then makes symptoms.
const DefaultSettle = 30 * time.Second

// MaxSettle bounds a rule's Settle: a real outage of a device behind a
// parent pages that much later.
const MaxSettle = time.Hour

// SettleTime is the rule's Settle, or DefaultSettle.
func (r Rule) SettleTime() time.Duration {
	if r.Settle > 0 {
		return r.Settle
	}
	return DefaultSettle
}

// Severities an alarm can have.
var Severities = []string{meshmon.SeverityCritical, meshmon.SeverityMajor, meshmon.SeverityWarning, meshmon.SeverityInfo}

// Validate names the first field that breaks a rule; channels lists the
// channels that exist (nil: do not check).
func (r Rule) Validate(channels []string) error {
	if err := meshmon.ValidateName("rule", r.Name); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: rule %s: %s", ErrInvalid, r.Name, fmt.Sprintf(format, a...))
	}
	for _, s := range r.Severities {
		if !slices.Contains(Severities, s) {
			return bad("severity %q: use one of %s", s, strings.Join(Severities, ", "))
		}
	}
	for field, names := range map[string][]string{"site": r.Sites, "device": r.Devices, "kind": r.Kinds} {
		for _, n := range names {
			if err := meshmon.ValidateName(field, n); err != nil {
				return bad("%v", err)
			}
		}
	}
	if len(r.Channels) == 0 {
		return bad("channels: name at least one channel")
	}
	if r.Settle < 0 || r.Settle > MaxSettle {
		return bad("settle %s: want 0 (the default, %s) up to %s", r.Settle, DefaultSettle, MaxSettle)
	}
	all := slices.Clone(r.Channels)
	var last time.Duration
	for i, s := range r.Escalation {
		if s.After <= last {
			return bad("escalation step %d: after %s must be later than the step before (%s); steps count from the page", i+1, s.After, last)
		}
		last = s.After
		all = append(all, s.Channel)
	}
	for _, ch := range all {
		if err := meshmon.ValidateName("channel", ch); err != nil {
			return bad("%v", err)
		}
		if channels != nil && !slices.Contains(channels, ch) {
			return bad("channel %s does not exist: add it first (meshmon notify channel add)", ch)
		}
	}
	return nil
}

// Matches reports whether the rule's lists all match the alarm.
func (r Rule) Matches(a alarm.Alarm) bool {
	in := func(list []string, v string) bool { return len(list) == 0 || slices.Contains(list, v) }
	return in(r.Severities, a.Severity) && in(r.Sites, a.Site) && in(r.Devices, a.Device) && in(r.Kinds, a.Kind)
}
