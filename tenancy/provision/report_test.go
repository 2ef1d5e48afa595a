package provision_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/meshmon/meshmon/tenancy"
	"github.com/meshmon/meshmon/tenancy/provision"
)

// TestTenantReport: a tenant as 'tenant show' prints it, with its usage or
// why that is unknown, and the table of 'tenant list'.
func TestTenantReport(t *testing.T) {
	issued := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ten := tenancy.Tenant{Name: "acme", Account: "ACC", Limits: tenancy.Limits{DiskBytes: 1 << 30, MemoryBytes: 1 << 20, Streams: 10, Consumers: 20, Conns: 30, LeafConns: 4},
		Users: []tenancy.User{{Name: "noc", Role: tenancy.RoleNOC, Issued: issued}, {Name: "poller-paris", Role: tenancy.RolePoller, Site: "paris", Issued: issued, Revoked: true}}}

	var b bytes.Buffer
	rep := provision.NewTenantReport(ten, provision.Usage{Disk: 2048, Streams: 2, Events: 7}, nil)
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"tenant acme (account ACC)\n",
		"limits: disk 1GiB, memory 1MiB, 10 streams, 20 consumers, 30 connections, 4 leaf connections\n",
		"usage: disk 2KiB, memory 0B, 2 streams, 0 consumers; 7 events, 0 samples\n",
		"noc           noc     -      2026-01-02T03:04:05Z  valid",
		"poller-paris  poller  paris  2026-01-02T03:04:05Z  revoked",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("%q missing from\n%s", want, b.String())
		}
	}

	down := provision.NewTenantReport(ten, provision.Usage{}, errors.New("central does not answer"))
	b.Reset()
	if err := down.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "usage: unknown (central does not answer)\n") {
		t.Errorf("usage unknown: got\n%s", b.String())
	}
	j, err := json.Marshal(down)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(j), `"usage_error":"central does not answer"`) || strings.Contains(string(j), `"usage":`) {
		t.Errorf("usage unknown as JSON: %s", j)
	}

	b.Reset()
	if err := provision.WriteTenants(&b, nil); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "(no tenants; 'meshmon tenant create NAME' creates one)") {
		t.Errorf("no tenants: got\n%s", b.String())
	}
	b.Reset()
	if err := provision.WriteTenants(&b, []tenancy.Tenant{ten}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "acme") || !strings.Contains(b.String(), "1GiB") {
		t.Errorf("one tenant: got\n%s", b.String())
	}
}
