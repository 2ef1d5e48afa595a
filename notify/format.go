package notify

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/meshmon/meshmon/alarm"
)

// Envelope is a webhook's JSON body: the message, named by its delivery
// ID (also its X-Meshmon-Delivery header), for the tenant and channel.
type Envelope struct {
	Delivery string    `json:"delivery"`
	Tenant   string    `json:"tenant"`
	Channel  string    `json:"channel"`
	Sent     time.Time `json:"sent"`
	Message
}

// Subject is the message's one-line title.
func (m Message) Subject() string {
	if len(m.Items) == 1 && m.Reason == "" {
		return oneLine(itemLine(m.Items[0]))
	}
	why := "over the channel's rate limit"
	if m.Reason == ReasonLate {
		why = "applied late, a site catching up"
	}
	return fmt.Sprintf("[meshmon] %d alarm changes (%s)", len(m.Items), why)
}

// Text is the message's body as plain text: the subject, then one line
// per item of a summary.
func (m Message) Text() string {
	var b strings.Builder
	b.WriteString(m.Subject())
	b.WriteString("\n")
	if len(m.Items) == 1 && m.Reason == "" {
		a := m.Items[0].Alarm
		fmt.Fprintf(&b, "\nalarm %s (%s, %s), first seen %s, last seen %s, count %d\n",
			a.ID, a.Kind, a.State, a.FirstSeen.UTC().Format(time.RFC3339), a.LastSeen.UTC().Format(time.RFC3339), a.Count)
		if a.Acked {
			fmt.Fprintf(&b, "acknowledged by %s\n", a.AckedBy)
		}
		if it := m.Items[0]; it.What == alarm.WhatCommented && len(a.Comments) > 0 {
			last := a.Comments[len(a.Comments)-1]
			fmt.Fprintf(&b, "comment by %s: %s\n", last.By, oneLine(last.Text))
		}
		return b.String()
	}
	b.WriteString("\n")
	for _, it := range m.Items {
		b.WriteString("- " + oneLine(itemLine(it)) + "\n")
	}
	return b.String()
}

func itemLine(it Item) string {
	a := it.Alarm
	what := it.What
	if it.What == WhatEscalation {
		what = fmt.Sprintf("ESCALATION %d, still unacknowledged", it.Step)
	}
	if it.By != "" {
		what += " by " + it.By
	}
	return fmt.Sprintf("[meshmon] %s %s: %s/%s %s: %s", strings.ToUpper(a.Severity), what, a.Site, a.Device, a.Kind, a.Message)
}

// oneLine keeps text that came from devices on one line (a message
// header must not be split).
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r < 0x20 {
			return ' '
		}
		return r
	}, s)
}

// slackBody is a Slack-compatible incoming webhook's body. The text is
// escaped as Slack asks (&, <, >): an alarm's message comes from devices
// and pollers, and Slack reads <!channel> as a ping of everyone and
// <https://x|text> as a link that shows only its text.
func slackBody(m Message) ([]byte, error) {
	return json.Marshal(map[string]string{"text": slackEscaper.Replace(m.Text())})
}

var slackEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// teamsText keeps text that came from devices from being read as a
// markdown link by a Teams card ([text](url) shows only its text): a zero
// width space between the brackets and the parenthesis leaves what it
// shows as it was.
func teamsText(s string) string { return strings.ReplaceAll(s, "](", "]\u200b(") }

// teamsBody is a Microsoft Teams incoming webhook's (Workflows) body: an
// Adaptive Card with the subject and the text.
func teamsBody(m Message) ([]byte, error) {
	card := map[string]any{
		"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
		"type":    "AdaptiveCard",
		"version": "1.4",
		"body": []map[string]any{
			{"type": "TextBlock", "text": teamsText(m.Subject()), "weight": "Bolder", "wrap": true},
			{"type": "TextBlock", "text": teamsText(m.Text()), "wrap": true},
		},
	}
	return json.Marshal(map[string]any{
		"type":        "message",
		"attachments": []map[string]any{{"contentType": "application/vnd.microsoft.card.adaptive", "content": card}},
	})
}
