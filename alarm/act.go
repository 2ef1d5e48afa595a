package alarm

import (
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Verbs of a NOC's action on an alarm.
const (
	VerbAck     = "ack"
	VerbUnack   = "unack"
	VerbComment = "comment"
	VerbClear   = "clear"
)

// Verbs lists the actions; NOCVerbs are those a NOC credential may take
// (an admin may take every one).
var (
	Verbs    = []string{VerbAck, VerbUnack, VerbComment, VerbClear}
	NOCVerbs = []string{VerbAck, VerbUnack, VerbComment}
)

// MaxCommentLen is the longest comment, in bytes.
const MaxCommentLen = 2000

// Action is a NOC's action on an alarm. By is the acting user, which the
// processor takes from the subject the request came on (which only that
// user may publish to), never from the request's body.
type Action struct {
	Verb string `json:"verb"`
	ID   string `json:"id"`
	Text string `json:"text,omitempty"` // the comment; optional with ack and clear
	By   string `json:"-"`
}

// Validate checks the action's verb, alarm ID and text; the error names
// the field and the rule and wraps ErrInvalidAction.
func (a Action) Validate() error {
	switch {
	case !slices.Contains(Verbs, a.Verb):
		return fmt.Errorf("%w: verb %q is unknown; use one of %s", ErrInvalidAction, a.Verb, strings.Join(Verbs, ", "))
	case a.ID == "" || strings.Count(a.ID, ".") != 2 || strings.ContainsAny(a.ID, " *>\t"):
		return fmt.Errorf("%w: alarm id %q is not <site>.<device>.<check> (see 'meshmon alarms list')", ErrInvalidAction, a.ID)
	case a.Verb == VerbComment && strings.TrimSpace(a.Text) == "":
		return fmt.Errorf("%w: comment text is empty", ErrInvalidAction)
	case len(a.Text) > MaxCommentLen || !utf8.ValidString(a.Text):
		return fmt.Errorf("%w: comment text must be valid UTF-8 of at most %d bytes", ErrInvalidAction, MaxCommentLen)
	case a.By == "":
		return fmt.Errorf("%w: the acting user is unknown", ErrInvalidAction)
	}
	return nil
}

// Act applies a NOC's action at now and returns the changes: the action's
// own (By set), then, for a clear of a device's ICMP alarm, its children's
// that stop being symptoms. A text with ack or clear is kept as a comment
// of the same change. It fails (changing nothing) with an error wrapping
// ErrInvalidAction, ErrNotFound, ErrNotOpen (ack or clear of a cleared
// alarm) or ErrNoChange (ack of an acknowledged alarm, unack of one that
// is not).
func (s *Set) Act(act Action, now time.Time) ([]Change, error) {
	if err := act.Validate(); err != nil {
		return nil, err
	}
	a, ok := s.alarms[act.ID]
	if !ok {
		return nil, fmt.Errorf("alarm %s: %w", act.ID, ErrNotFound)
	}
	what := ""
	switch act.Verb {
	case VerbAck:
		if a.State != StateOpen {
			return nil, fmt.Errorf("ack alarm %s: %w (cleared at %s)", act.ID, ErrNotOpen, a.ClearedAt.Format(time.RFC3339))
		}
		if a.Acked {
			return nil, fmt.Errorf("ack alarm %s: %w: acknowledged by %s already", act.ID, ErrNoChange, a.AckedBy)
		}
		a.Acked, a.AckedBy, a.AckedAt, what = true, act.By, now, WhatAcked
	case VerbUnack:
		if !a.Acked {
			return nil, fmt.Errorf("unack alarm %s: %w: it is not acknowledged", act.ID, ErrNoChange)
		}
		a.Acked, a.AckedBy, a.AckedAt, what = false, "", time.Time{}, WhatUnacked
	case VerbComment:
		what = WhatCommented
	case VerbClear:
		if a.State != StateOpen {
			return nil, fmt.Errorf("clear alarm %s: %w (cleared at %s)", act.ID, ErrNotOpen, a.ClearedAt.Format(time.RFC3339))
		}
		a.State, a.ClearedAt, a.ClearedBy, what = StateCleared, now, act.By, WhatCleared
	}
	if act.Text != "" {
		a.Comments = append(a.Comments, Comment{By: act.By, At: now, Text: act.Text})
	}
	out := []Change{s.change(a, what, act.By, now, 0)}
	if act.Verb == VerbClear && a.Check == "icmp" {
		out = append(out, s.correlateChildren(a.Site, a.Device, now, 0)...)
	}
	return out, nil
}

// sortedIDs returns the alarms' IDs in order.
func (s *Set) sortedIDs() []string {
	ids := make([]string, 0, len(s.alarms))
	for id := range s.alarms {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}
