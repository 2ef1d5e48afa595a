package meshmon

import (
	"errors"
	"fmt"
	"strings"
)

// ErrUntrustedEvent is what CheckEvent returns for an event central must
// not act on.
var ErrUntrustedEvent = errors.New("untrusted event")

// maxCheckLen bounds a check's name: an alarm's id, subject and key are
// built of it.
const maxCheckLen = 2 * MaxNameLen

// CheckEvent checks an event read from subject before central acts on
// it. A poller's credential may publish any body on its own site's
// subjects (ev.<site>.>), so the body's site, device and kind must be the
// subject's: the subject is what the permissions checked, the body is
// not. And the names an alarm's id, subject and key are made of (the
// check, the parent, a trap's interface index) must be valid there: one
// that a subject or a key refuses would stop the tenant's alarm
// processing at that event, retried for as long as the stream keeps it.
func CheckEvent(subject string, ev *Event) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrUntrustedEvent, subject, fmt.Sprintf(format, args...))
	}
	tok := strings.Split(subject, ".")
	if len(tok) != 4 || tok[0] != "ev" {
		return fail("not a subject ev.<site>.<device>.<kind>")
	}
	d := &ev.Data
	for _, f := range []struct{ field, body, subj string }{{"site", d.Site, tok[1]}, {"device", d.Device, tok[2]}, {"kind", d.Kind, tok[3]}} {
		if f.body != f.subj {
			return fail("its %s is %q, its subject's %q", f.field, f.body, f.subj)
		}
	}
	if err := ValidateName("site", d.Site); err != nil {
		return fail("%v", err)
	}
	if err := ValidateName("device", d.Device); err != nil {
		return fail("%v", err)
	}
	if d.Parent != "" {
		if err := ValidateName("parent", d.Parent); err != nil {
			return fail("%v", err)
		}
	}
	if d.Check != "" {
		if err := validCheck(d.Check); err != nil {
			return fail("%v", err)
		}
	}
	if d.Trap != nil {
		if idx, ok := d.Trap.Labels["if_index"]; ok && !allDigits(idx) {
			return fail("its trap's if_index %q is not a number", idx)
		}
	}
	return nil
}

// validCheck reports whether check can name an alarm's check: tokens of
// letters, digits, '-' and '_', separated by '.' ("icmp", "if.3",
// "trap.coldStart").
func validCheck(check string) error {
	if len(check) > maxCheckLen {
		return fmt.Errorf("check %q is %d characters; at most %d are allowed", check, len(check), maxCheckLen)
	}
	for t := range strings.SplitSeq(check, ".") {
		if t == "" {
			return fmt.Errorf("check %q has an empty token", check)
		}
		for _, r := range t {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return fmt.Errorf("check %q holds %q; use letters, digits, '-', '_' and '.' between tokens", check, r)
			}
		}
	}
	return nil
}

func allDigits(s string) bool {
	if s == "" || len(s) > 10 {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}
