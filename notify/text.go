package notify

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// ChannelView is a channel as a listing shows it: no secret, only
// whether one is set.
type ChannelView struct {
	Channel
	SecretSet bool `json:"secret_set"`
}

// WriteChannels writes channels as a table.
func WriteChannels(out io.Writer, channels []ChannelView) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tTYPE\tTARGET\tRATE\tSECRET")
	for _, v := range channels {
		target := v.URL
		switch v.Type {
		case TypeSlack, TypeTeams:
			target = "(URL in the secret)"
		case TypeEmail:
			target = v.SMTP + " -> " + strings.Join(v.To, ",")
		}
		rate := "no limit"
		if v.RatePerMinute > 0 {
			rate = fmt.Sprintf("%g/min, burst %d", v.RatePerMinute, v.Burst)
		}
		sec := "-"
		if v.SecretSet {
			sec = "set"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", v.Name, v.Type, target, rate, sec)
	}
	return w.Flush()
}

// WriteRules writes rules as a table.
func WriteRules(out io.Writer, rules []Rule) error {
	any := func(l []string) string {
		if len(l) == 0 {
			return "*"
		}
		return strings.Join(l, ",")
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tSEVERITY\tSITE\tDEVICE\tKIND\tCHANNELS\tESCALATION\tACTIONS\tSETTLE")
	for _, r := range rules {
		var esc []string
		for _, s := range r.Escalation {
			esc = append(esc, s.After.String()+"="+s.Channel)
		}
		actions := "-"
		if r.Actions {
			actions = "yes"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, any(r.Severities), any(r.Sites), any(r.Devices), any(r.Kinds),
			strings.Join(r.Channels, ","), strings.Join(esc, " "), actions, r.SettleTime())
	}
	return w.Flush()
}

// ParseSteps parses escalation steps, in order (ParseStep).
func ParseSteps(ss []string) ([]Step, error) {
	var steps []Step
	for _, s := range ss {
		step, err := ParseStep(s)
		if err != nil {
			return nil, err
		}
		steps = append(steps, step)
	}
	return steps, nil
}

// ParseStep parses an escalation step, AFTER=CHANNEL (15m=oncall).
func ParseStep(s string) (Step, error) {
	after, ch, ok := strings.Cut(s, "=")
	d, err := time.ParseDuration(after)
	if !ok || err != nil || d <= 0 {
		return Step{}, fmt.Errorf("%w: escalation step %q: want AFTER=CHANNEL, like 15m=oncall", ErrInvalid, s)
	}
	return Step{After: d, Channel: ch}, nil
}
