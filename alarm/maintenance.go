package alarm

import (
	"fmt"
	"time"

	"github.com/meshmon/meshmon"
)

// Recurrences of a maintenance window.
const (
	EveryOnce   = ""       // one-off: from Start for Duration
	EveryDaily  = "daily"  // each day at Start's wall-clock time in TZ
	EveryWeekly = "weekly" // each week on Start's weekday and time in TZ
)

// MaintenanceBucket is the bucket of a tenant's maintenance windows at
// central (key Window.ID). Admins write it (meshmon maintenance add|rm);
// the alarm processor watches it.
const MaintenanceBucket = "maintenance"

// Window is a maintenance window over a device, a site or the whole
// tenant: alarms in it still open and carry its ID (Alarm.Maintenance),
// and their notifications are held.
type Window struct {
	ID     string `json:"id"`
	Site   string `json:"site,omitempty"`   // "" with Device "": the whole tenant
	Device string `json:"device,omitempty"` // needs Site
	// Start is the first start; a recurring window starts again at the
	// same wall-clock time in TZ (through daylight-saving changes).
	Start    time.Time        `json:"start"`
	Duration meshmon.Duration `json:"duration"`
	Every    string           `json:"every,omitempty"` // EveryOnce, EveryDaily, EveryWeekly
	TZ       string           `json:"tz"`              // IANA time zone, "UTC" by default
	Comment  string           `json:"comment,omitempty"`
	By       string           `json:"by,omitempty"`
	Created  time.Time        `json:"created,omitzero"`
	loc      *time.Location   // loaded by Validate
}

// Validate checks the window and loads its time zone; the error names the
// field and the rule and wraps ErrInvalidWindow.
func (w *Window) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w %s: %s", ErrInvalidWindow, w.ID, fmt.Sprintf(format, a...))
	}
	if err := meshmon.ValidateName("maintenance window id", w.ID); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidWindow, err)
	}
	if w.Site != "" {
		if err := meshmon.ValidateName("site", w.Site); err != nil {
			return fmt.Errorf("%w %s: %w", ErrInvalidWindow, w.ID, err)
		}
	}
	if w.Device != "" {
		if w.Site == "" {
			return bad("device %q needs its site (--site)", w.Device)
		}
		if err := meshmon.ValidateName("device", w.Device); err != nil {
			return fmt.Errorf("%w %s: %w", ErrInvalidWindow, w.ID, err)
		}
	}
	if w.Start.IsZero() {
		return bad("start is empty; give the first start (RFC 3339 or 2006-01-02T15:04 in the time zone)")
	}
	var period time.Duration
	switch w.Every {
	case EveryOnce:
	case EveryDaily:
		period = 24 * time.Hour
	case EveryWeekly:
		period = 7 * 24 * time.Hour
	default:
		return bad("every %q is unknown; use %q or %q, or nothing for a one-off window", w.Every, EveryDaily, EveryWeekly)
	}
	if w.Duration <= 0 {
		return bad("duration %s must be positive", w.Duration)
	}
	if period > 0 && w.Duration.D() > period {
		return bad("duration %s is longer than its recurrence (%s)", w.Duration, w.Every)
	}
	if w.TZ == "" {
		w.TZ = "UTC"
	}
	loc, err := time.LoadLocation(w.TZ)
	if err != nil {
		return bad("tz %q is not an IANA time zone (e.g. Europe/Paris): %v", w.TZ, err)
	}
	w.loc = loc
	return nil
}

// Covers reports whether the window is over the device at site.
func (w *Window) Covers(site, device string) bool {
	return (w.Site == "" || w.Site == site) && (w.Device == "" || w.Device == device)
}

// Active reports whether t is within the window (an occurrence's start
// included, its end not).
func (w *Window) Active(t time.Time) bool {
	start, ok := w.lastStart(t)
	return ok && t.Before(start.Add(w.Duration.D()))
}

// lastStart returns the latest occurrence's start at or before t.
func (w *Window) lastStart(t time.Time) (time.Time, bool) {
	if t.Before(w.Start) {
		return time.Time{}, false
	}
	if w.Every == EveryOnce {
		return w.Start, true
	}
	loc := w.loc
	if loc == nil {
		var err error
		if loc, err = time.LoadLocation(w.TZ); err != nil {
			loc = time.UTC
		}
	}
	s := w.Start.In(loc)
	lt := t.In(loc)
	c := time.Date(lt.Year(), lt.Month(), lt.Day(), s.Hour(), s.Minute(), s.Second(), s.Nanosecond(), loc)
	if w.Every == EveryWeekly {
		c = c.AddDate(0, 0, -((int(c.Weekday()) - int(s.Weekday()) + 7) % 7))
	}
	step := 1
	if w.Every == EveryWeekly {
		step = 7
	}
	if c.After(t) {
		c = c.AddDate(0, 0, -step)
	}
	return c, !c.Before(w.Start)
}

// windowAt returns the ID of the first window (by ID) over the device that
// is active at t, or "".
func (s *Set) windowAt(site, device string, t time.Time) string {
	for i := range s.windows {
		w := &s.windows[i]
		if w.Covers(site, device) && w.Active(t) {
			return w.ID
		}
	}
	return ""
}

// Tick brings the Maintenance of every open alarm up to the windows at
// now (a window that began or ended since its last change) and returns the
// changes, in ID order.
func (s *Set) Tick(now time.Time) []Change {
	var out []Change
	for _, id := range s.sortedIDs() {
		a := s.alarms[id]
		if a.State != StateOpen {
			continue
		}
		if w := s.windowAt(a.Site, a.Device, now); w != a.Maintenance {
			a.Maintenance = w
			out = append(out, s.change(a, WhatMaintenance, "", now, 0))
		}
	}
	return out
}

// ParseStart reads a window's start: RFC 3339 (with its offset), or a
// wall-clock time "2006-01-02T15:04" ("2006-01-02 15:04") in the IANA time
// zone tz ("" is UTC).
func ParseStart(s, tz string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if tz == "" {
		tz = "UTC"
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return time.Time{}, fmt.Errorf("tz %q is not an IANA time zone (e.g. Europe/Paris): %w", tz, err)
	}
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02T15:04:05", "2006-01-02 15:04:05"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("start %q: use RFC 3339 (2026-12-03T22:00:00+01:00) or 2026-12-03T22:00 in --tz", s)
}
