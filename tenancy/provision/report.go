package provision

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/tenancy"
)

// TenantReport is a tenant as `meshmon tenant show` prints it: the key
// store's record and, when central answered, what the tenant uses there.
type TenantReport struct {
	tenancy.Tenant
	Usage *Usage `json:"usage,omitempty"`
	Error string `json:"usage_error,omitempty"` // why the usage is unknown
}

// NewTenantReport is t with the usage TenantUsage read, or the error it
// failed with.
func NewTenantReport(t tenancy.Tenant, u Usage, err error) TenantReport {
	if err != nil {
		return TenantReport{Tenant: t, Error: err.Error()}
	}
	return TenantReport{Tenant: t, Usage: &u}
}

// WriteText writes the report for people: limits, usage and users.
func (r TenantReport) WriteText(w io.Writer) error {
	l := r.Limits
	fmt.Fprintf(w, "tenant %s (account %s)\n", r.Name, r.Account)
	fmt.Fprintf(w, "limits: disk %s, memory %s, %d streams, %d consumers, %d connections, %d leaf connections\n",
		meshmon.FormatSize(l.DiskBytes), meshmon.FormatSize(l.MemoryBytes), l.Streams, l.Consumers, l.Conns, l.LeafConns)
	if u := r.Usage; u == nil {
		fmt.Fprintf(w, "usage: unknown (%s)\n", r.Error)
	} else {
		fmt.Fprintf(w, "usage: disk %s, memory %s, %d streams, %d consumers; %d events, %d samples\n",
			meshmon.FormatSize(int64(u.Disk)), meshmon.FormatSize(int64(u.Memory)), u.Streams, u.Consumers, u.Events, u.Samples)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nUSER\tROLE\tSITE\tISSUED\tSTATE")
	for _, us := range r.Users {
		state := "valid"
		if us.Revoked {
			state = "revoked"
		}
		site := us.Site
		if site == "" {
			site = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", us.Name, us.Role, site, us.Issued.Format(time.RFC3339), state)
	}
	return tw.Flush()
}

// WriteTenants writes the table `meshmon tenant list` prints.
func WriteTenants(w io.Writer, ts []tenancy.Tenant) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TENANT\tACCOUNT\tDISK\tMEMORY\tSTREAMS\tCONSUMERS\tCONNECTIONS\tLEAFS\tUSERS")
	if len(ts) == 0 {
		fmt.Fprintln(tw, "(no tenants; 'meshmon tenant create NAME' creates one)")
	}
	for _, t := range ts {
		l := t.Limits
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\n", t.Name, t.Account, meshmon.FormatSize(l.DiskBytes), meshmon.FormatSize(l.MemoryBytes),
			l.Streams, l.Consumers, l.Conns, l.LeafConns, len(t.Users))
	}
	return tw.Flush()
}
