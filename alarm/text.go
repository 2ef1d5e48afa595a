package alarm

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// WriteAlarms writes alarms as a table, one line each, as 'meshmon alarms
// list' prints them.
func WriteAlarms(w io.Writer, alarms []Alarm) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tSEVERITY\tKIND\tCOUNT\tLAST SEEN\tACK\tNOTE")
	for _, a := range alarms {
		ack := "-"
		if a.Acked {
			ack = a.AckedBy
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", a.ID, a.State, a.Severity, a.Kind, a.Count, a.LastSeen.UTC().Format(time.RFC3339), ack, a.note())
	}
	return tw.Flush()
}

// note is what else a table line says of an alarm: a symptom, a window.
func (a Alarm) note() string {
	s := ""
	if a.SymptomOf != "" {
		s = "symptom of " + a.SymptomOf
	}
	if a.Maintenance != "" {
		if s != "" {
			s += "; "
		}
		s += "maintenance " + a.Maintenance
	}
	return s
}

// WriteText writes one alarm in full, as 'meshmon alarms show' prints it.
func (a Alarm) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	t := func(v time.Time) string {
		if v.IsZero() {
			return "-"
		}
		return v.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(tw, "id:\t%s\ntenant:\t%s\nsite:\t%s\ndevice:\t%s\ncheck:\t%s\nkind:\t%s\nseverity:\t%s\nstate:\t%s\nmessage:\t%s\n",
		a.ID, a.Tenant, a.Site, a.Device, a.Check, a.Kind, a.Severity, a.State, a.Message)
	fmt.Fprintf(tw, "count:\t%d\nfirst seen:\t%s\nlast seen:\t%s\nopened:\t%d times\n", a.Count, t(a.FirstSeen), t(a.LastSeen), a.Opened)
	if a.State == StateCleared {
		by := "recovery"
		if a.ClearedBy != "" {
			by = a.ClearedBy
		}
		fmt.Fprintf(tw, "cleared:\t%s by %s\n", t(a.ClearedAt), by)
	}
	if a.Acked {
		fmt.Fprintf(tw, "acked:\t%s by %s\n", t(a.AckedAt), a.AckedBy)
	}
	if a.Parent != "" {
		fmt.Fprintf(tw, "parent:\t%s\n", a.Parent)
	}
	if a.SymptomOf != "" {
		fmt.Fprintf(tw, "symptom of:\t%s\n", a.SymptomOf)
	}
	if a.Maintenance != "" {
		fmt.Fprintf(tw, "maintenance:\t%s\n", a.Maintenance)
	}
	for _, c := range a.Comments {
		fmt.Fprintf(tw, "comment:\t%s %s: %s\n", t(c.At), c.By, c.Text)
	}
	return tw.Flush()
}

// WriteWindows writes maintenance windows as a table, as 'meshmon
// maintenance list' prints them.
func WriteWindows(w io.Writer, ws []Window) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSCOPE\tSTART\tDURATION\tEVERY\tTZ\tCOMMENT")
	for _, win := range ws {
		scope := "tenant"
		switch {
		case win.Device != "":
			scope = "device " + win.Site + "/" + win.Device
		case win.Site != "":
			scope = "site " + win.Site
		}
		every := win.Every
		if every == "" {
			every = "once"
		}
		start := win.Start
		if loc, err := time.LoadLocation(win.TZ); err == nil {
			start = start.In(loc)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", win.ID, scope, start.Format("2006-01-02 15:04 MST"), win.Duration, every, win.TZ, win.Comment)
	}
	return tw.Flush()
}
