package alarm

import (
	"errors"
	"testing"
	"time"

	"github.com/meshmon/meshmon"
)

func TestWindowActive(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Skip("no tzdata:", err)
	}
	at := func(s string) time.Time {
		v, err := time.ParseInLocation("2006-01-02 15:04", s, paris)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	// Nightly 02:00-03:00 Paris time, from a Saturday in October: the
	// clocks go back on 25 October 2026, and the window follows the
	// wall clock.
	daily := Window{ID: "nightly", Start: at("2026-10-24 02:00"), Duration: meshmon.Duration(time.Hour), Every: EveryDaily, TZ: "Europe/Paris"}
	weekly := Window{ID: "sunday", Site: "par", Start: at("2026-10-25 22:00"), Duration: meshmon.Duration(4 * time.Hour), Every: EveryWeekly, TZ: "Europe/Paris"}
	once := Window{ID: "swap", Site: "par", Device: "r1", Start: at("2026-10-24 10:00"), Duration: meshmon.Duration(30 * time.Minute), TZ: "Europe/Paris"}
	cases := []struct {
		w    Window
		t    string
		want bool
	}{
		{daily, "2026-10-24 01:59", false},
		{daily, "2026-10-24 02:00", true},
		{daily, "2026-10-24 03:00", false},
		{daily, "2026-10-23 02:30", false}, // before the first start
		{daily, "2026-10-26 02:30", true},  // after the change to winter time
		{daily, "2026-12-03 02:59", true},
		{weekly, "2026-11-01 23:00", true},  // a Sunday
		{weekly, "2026-11-02 01:59", true},  // over midnight
		{weekly, "2026-11-02 02:00", false}, // its end
		{weekly, "2026-10-31 23:00", false}, // a Saturday
		{once, "2026-10-24 10:29", true},
		{once, "2026-10-25 10:10", false},
	}
	for _, c := range cases {
		w := c.w
		if err := w.Validate(); err != nil {
			t.Fatal(err)
		}
		if got := w.Active(at(c.t)); got != c.want {
			t.Errorf("%s at %s: active %v, want %v", w.ID, c.t, got, c.want)
		}
	}
}

func TestWindowValidate(t *testing.T) {
	good := Window{ID: "w", Start: t0, Duration: meshmon.Duration(time.Hour)}
	bad := []func(w *Window){
		func(w *Window) { w.ID = "" },
		func(w *Window) { w.ID = "a.b" },
		func(w *Window) { w.Device = "r1" },
		func(w *Window) { w.Site = "PAR" },
		func(w *Window) { w.Start = time.Time{} },
		func(w *Window) { w.Duration = 0 },
		func(w *Window) { w.Every = "monthly" },
		func(w *Window) { w.Every, w.Duration = EveryDaily, meshmon.Duration(25*time.Hour) },
		func(w *Window) { w.TZ = "Mars/Olympus" },
	}
	if err := good.Validate(); err != nil || good.TZ != "UTC" {
		t.Fatalf("good window: %v (tz %q)", err, good.TZ)
	}
	for i, f := range bad {
		w := good
		f(&w)
		if err := w.Validate(); !errors.Is(err, ErrInvalidWindow) {
			t.Errorf("case %d: %v, want ErrInvalidWindow", i, err)
		}
	}
}

func TestMaintenanceOnAlarms(t *testing.T) {
	s := NewSet("acme")
	w := Window{ID: "swap", Site: "par", Device: "r1", Start: t0.Add(time.Minute), Duration: meshmon.Duration(time.Hour)}
	if err := w.Validate(); err != nil {
		t.Fatal(err)
	}
	s.SetWindows([]Window{w})
	c := s.Apply(ev("r1", "", meshmon.KindNodeDown, "icmp", 0), 1, t0)
	if c[0].Alarm.Maintenance != "" {
		t.Fatal("alarm opened before the window carries it")
	}
	c = s.Tick(t0.Add(2 * time.Minute))
	if len(c) != 1 || c[0].What != WhatMaintenance || c[0].Alarm.Maintenance != "swap" {
		t.Fatalf("window began: %v", whats(c))
	}
	if c = s.Tick(t0.Add(3 * time.Minute)); len(c) != 0 {
		t.Fatalf("tick within the window: %v", whats(c))
	}
	c = s.Apply(ev("r1", "", meshmon.KindIfDown, "if.1", 5*time.Minute), 2, t0)
	if c[0].Alarm.Maintenance != "swap" || c[0].Alarm.State != StateOpen {
		t.Fatalf("alarm opened in the window: %+v", c[0].Alarm)
	}
	if c = s.Apply(ev("r2", "", meshmon.KindIfDown, "if.1", 5*time.Minute), 3, t0); c[0].Alarm.Maintenance != "" {
		t.Fatal("another device's alarm carries the window")
	}
	if c = s.Tick(t0.Add(2 * time.Hour)); len(c) != 2 || c[0].Alarm.Maintenance != "" {
		t.Fatalf("window ended: %v", whats(c))
	}
}

// TestOverlappingWindowsInAnyOrder: of two windows over an alarm, the one
// it carries does not depend on the order the windows were given in (the
// processor hands them over from a map), so handing them over again makes
// no maintenance change.
func TestOverlappingWindowsInAnyOrder(t *testing.T) {
	var ws []Window
	for _, w := range []Window{
		{ID: "tenant-wide", Start: t0, Duration: meshmon.Duration(time.Hour)},
		{ID: "core-swap", Site: "par", Device: "r1", Start: t0, Duration: meshmon.Duration(time.Hour)},
		{ID: "par-night", Site: "par", Start: t0, Duration: meshmon.Duration(time.Hour)},
	} {
		if err := w.Validate(); err != nil {
			t.Fatal(err)
		}
		ws = append(ws, w)
	}
	s := NewSet("acme")
	s.SetWindows(ws)
	if c := s.Apply(ev("r1", "", meshmon.KindNodeDown, "icmp", time.Minute), 1, t0.Add(time.Minute)); c[0].Alarm.Maintenance != "core-swap" {
		t.Fatalf("alarm opened in three windows carries %q, want the first by ID (core-swap)", c[0].Alarm.Maintenance)
	}
	for _, order := range [][]int{{2, 1, 0}, {1, 0, 2}, {0, 2, 1}} {
		s.SetWindows([]Window{ws[order[0]], ws[order[1]], ws[order[2]]})
		if c := s.Tick(t0.Add(2 * time.Minute)); len(c) != 0 {
			t.Fatalf("the same windows in order %v: changes %v (now %q)", order, whats(c), c[0].Alarm.Maintenance)
		}
	}
	if got := s.Windows(); got[0].ID != "core-swap" || got[1].ID != "par-night" || got[2].ID != "tenant-wide" {
		t.Fatalf("windows %v, want by ID", got)
	}
}
