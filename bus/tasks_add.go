package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/meshmon/meshmon"
)

// AddCandidates adds the candidates of a discovery that answered SNMP to
// the site's inventory inv (opened from central in the site's domain), with
// the credential each answered with: the request's own (creds, by index)
// or that of the inventory device it names. port is the SNMP port the
// discovery used (0: 161), interval the devices' poll interval.
func AddCandidates(ctx context.Context, inv *Inventory, cands []meshmon.Candidate, creds []meshmon.SNMP, port int, interval time.Duration) []meshmon.CandidateAdd {
	var out []meshmon.CandidateAdd
	for _, c := range cands {
		if !c.SNMP {
			continue
		}
		name := c.Name
		if name == "" {
			name = meshmon.CandidateName(c)
		}
		r := meshmon.CandidateAdd{Name: name, Address: c.Address, Result: "added"}
		s, err := candidateSNMP(ctx, inv, c.Credential, creds)
		if err == nil {
			s.Port = port
			checks := []string{meshmon.CheckSNMP}
			if c.ICMP {
				checks = []string{meshmon.CheckICMP, meshmon.CheckSNMP}
			}
			d := meshmon.Device{Name: name, Address: c.Address, Checks: checks, Interval: meshmon.Duration(interval), Retries: 1, SNMP: &s}
			_, err = inv.Create(ctx, d)
		}
		switch {
		case errors.Is(err, ErrDeviceExists):
			r.Result = "exists"
		case err != nil:
			r.Result, r.Error = "failed", err.Error()
		}
		out = append(out, r)
	}
	return out
}

// candidateSNMP is the SNMP settings a candidate's credential reference
// names (meshmon.Candidate.Credential).
func candidateSNMP(ctx context.Context, inv *Inventory, ref string, creds []meshmon.SNMP) (meshmon.SNMP, error) {
	kind, v, _ := strings.Cut(ref, ":")
	switch kind {
	case "request":
		i, err := strconv.Atoi(v)
		if err != nil || i < 0 || i >= len(creds) {
			return meshmon.SNMP{}, fmt.Errorf("credential %q: no such credential of the request", ref)
		}
		return creds[i], nil
	case "device":
		d, err := inv.Get(ctx, v)
		if err != nil {
			return meshmon.SNMP{}, fmt.Errorf("credential %q: %w", ref, err)
		}
		if d.SNMP == nil {
			return meshmon.SNMP{}, fmt.Errorf("credential %q: the device has no SNMP settings", ref)
		}
		return *d.SNMP, nil
	}
	return meshmon.SNMP{}, fmt.Errorf("credential %q: unknown reference", ref)
}
