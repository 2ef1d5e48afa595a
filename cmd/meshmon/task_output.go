package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
)

// taskOutput prints a task's replies: a walk's objects as they come, the
// progress of a long task on stderr, the rest once the task is done.
type taskOutput struct {
	req      meshmon.TaskRequest
	json     bool
	out      io.Writer
	progress io.Writer
	lastProg time.Time

	result taskResult
}

// taskResult is what 'task ... --json' prints.
type taskResult struct {
	ID         string              `json:"id"`
	Site       string              `json:"site"`
	Verb       string              `json:"verb"`
	Poller     string              `json:"poller,omitempty"`
	Samples    []meshmon.Sample    `json:"samples,omitempty"`
	Varbinds   []meshmon.Varbind   `json:"varbinds,omitempty"`
	Ping       *meshmon.PingResult `json:"ping,omitempty"`
	Candidates []meshmon.Candidate `json:"candidates,omitempty"`
	Added      []bus.CandidateAdd  `json:"added,omitempty"`
}

func newTaskOutput(c *cli.Context, req meshmon.TaskRequest) *taskOutput {
	return &taskOutput{req: req, json: c.Bool("json"), out: os.Stdout, progress: os.Stderr,
		result: taskResult{ID: req.ID, Site: req.Site, Verb: req.Verb}}
}

func (o *taskOutput) reply(r meshmon.TaskReply) {
	o.result.Poller = r.Poller
	o.result.Samples = append(o.result.Samples, r.Samples...)
	o.result.Candidates = append(o.result.Candidates, r.Candidates...)
	if r.Ping != nil {
		o.result.Ping = r.Ping
	}
	if o.req.Verb == meshmon.TaskWalk && !o.json {
		writeVarbinds(o.out, r.Varbinds)
	} else {
		o.result.Varbinds = append(o.result.Varbinds, r.Varbinds...)
	}
	if p := r.Progress; p != nil && p.Phase != bus.TaskStarted && o.req.Verb == meshmon.TaskDiscover && (time.Since(o.lastProg) >= time.Second || r.Done) {
		o.lastProg = time.Now()
		fmt.Fprintf(o.progress, "discover %s at %s: %s %d/%d, %d found\n", o.req.CIDR, o.req.Site, p.Phase, p.Done, p.Total, p.Found)
	}
}

// add adds the SNMP candidates to the site's inventory, from here.
func (o *taskOutput) add(c *cli.Context, req meshmon.TaskRequest) error {
	return withInventorySite(c, req.Site, func(ctx context.Context, inv *bus.Inventory) error {
		o.result.Added = bus.AddCandidates(ctx, inv, o.result.Candidates, req.Credentials, req.Port, c.Duration("interval"))
		return nil
	})
}

func (o *taskOutput) finish() error {
	meshmon.SortCandidates(o.result.Candidates)
	if o.json {
		return printJSON(o.out, o.result)
	}
	w := o.out
	switch o.req.Verb {
	case meshmon.TaskPollNow:
		writeSamples(w, o.result.Samples)
	case meshmon.TaskSNMPGet:
		writeVarbinds(w, o.result.Varbinds)
	case meshmon.TaskPing:
		if p := o.result.Ping; p != nil {
			fmt.Fprintf(w, "%s answers from site %s: %d/%d replies, rtt avg %.2f ms\n", p.Address, o.req.Site, p.Received, p.Sent, p.RTTAvgMS)
		}
	case meshmon.TaskDiscover:
		writeCandidates(w, o.result.Candidates)
		for _, a := range o.result.Added {
			line := fmt.Sprintf("device %s (%s): %s", a.Name, a.Address, a.Result)
			if a.Error != "" {
				line += ": " + a.Error
			}
			fmt.Fprintln(w, line)
		}
	}
	return nil
}

func writeVarbinds(w io.Writer, vbs []meshmon.Varbind) {
	for _, v := range vbs {
		fmt.Fprintf(w, "%s = %s: %s\n", v.OID, v.Type, v.Value)
	}
}

func writeSamples(w io.Writer, ss []meshmon.Sample) {
	for _, s := range ss {
		var parts []string
		for _, k := range sortedKeys(s.Labels) {
			parts = append(parts, k+"="+s.Labels[k])
		}
		for _, k := range sortedKeys(s.Values) {
			parts = append(parts, fmt.Sprintf("%s=%g", k, s.Values[k]))
		}
		fmt.Fprintf(w, "%s %s: %s\n", s.Device, s.Check, strings.Join(parts, " "))
		for _, i := range s.Interfaces {
			fmt.Fprintf(w, "  if %d %s: admin %s, oper %s, in %d, out %d octets\n", i.Index, i.Name, i.AdminStatus, i.OperStatus, i.InOctets, i.OutOctets)
		}
	}
}

func writeCandidates(w io.Writer, cs []meshmon.Candidate) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ADDRESS\tNAME\tICMP\tSNMP\tSYSOBJECTID\tIFS\tCREDENTIAL\tSYSDESCR")
	icmpOnly := 0
	for _, c := range cs {
		if !c.SNMP {
			icmpOnly++
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\t%d\t%s\t%s\n", c.Address, c.Name, c.ICMP, c.Version, c.SysObjectID, c.Interfaces, c.Credential, firstLine(c.SysDescr))
	}
	_ = tw.Flush()
	if icmpOnly > 0 {
		fmt.Fprintf(w, "%d more addresses answer ICMP only (--json lists them)\n", icmpOnly)
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
