package alarm

import (
	"fmt"
	"slices"
	"strings"

	"github.com/meshmon/meshmon"
)

// Filter selects alarms; an empty field selects all.
type Filter struct {
	Site     string
	Device   string
	Severity string // a meshmon.Severity*
	State    string // StateOpen, StateCleared, or StateAll ("" too) for both
}

// Severities an alarm can have, worst first.
var Severities = []string{meshmon.SeverityCritical, meshmon.SeverityMajor, meshmon.SeverityWarning, meshmon.SeverityInfo}

// Validate checks the filter's fields.
func (f Filter) Validate() error {
	if f.Severity != "" && !slices.Contains(Severities, f.Severity) {
		return fmt.Errorf("severity %q is unknown; use one of %s", f.Severity, strings.Join(Severities, ", "))
	}
	if f.State != "" && f.State != StateOpen && f.State != StateCleared && f.State != StateAll {
		return fmt.Errorf("state %q is unknown; use %s, %s or %s", f.State, StateOpen, StateCleared, StateAll)
	}
	return nil
}

// Match reports whether a is selected.
func (f Filter) Match(a *Alarm) bool {
	return (f.Site == "" || a.Site == f.Site) && (f.Device == "" || a.Device == f.Device) &&
		(f.Severity == "" || a.Severity == f.Severity) && (f.State == "" || f.State == StateAll || a.State == f.State)
}

// Select returns the alarms f selects, worst first: open before cleared,
// then by severity, then latest first, then by ID.
func Select(alarms []Alarm, f Filter) []Alarm {
	var sel []*Alarm
	for i := range alarms {
		if f.Match(&alarms[i]) {
			sel = append(sel, &alarms[i])
		}
	}
	slices.SortFunc(sel, compare)
	out := make([]Alarm, len(sel))
	for i, a := range sel {
		out[i] = *a
	}
	return out
}

func compare(a, b *Alarm) int {
	if a.State != b.State {
		if a.State == StateOpen {
			return -1
		}
		return 1
	}
	if c := rank(a.Severity) - rank(b.Severity); c != 0 {
		return c
	}
	if c := b.LastSeen.Compare(a.LastSeen); c != 0 {
		return c
	}
	return strings.Compare(a.ID, b.ID)
}

func rank(sev string) int {
	if i := slices.Index(Severities, sev); i >= 0 {
		return i
	}
	return len(Severities)
}
