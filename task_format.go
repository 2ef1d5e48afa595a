package meshmon

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// CandidateAdd is what adding one discovered candidate to a site's
// inventory did ('task discover --add').
type CandidateAdd struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	Result  string `json:"result"` // "added", "exists" or "failed"
	Error   string `json:"error,omitempty"`
}

// TaskResult gathers a task's replies: what 'task ... --json' prints.
type TaskResult struct {
	ID         string         `json:"id"`
	Site       string         `json:"site"`
	Verb       string         `json:"verb"`
	Poller     string         `json:"poller,omitempty"`
	Samples    []Sample       `json:"samples,omitempty"`
	Varbinds   []Varbind      `json:"varbinds,omitempty"`
	Ping       *PingResult    `json:"ping,omitempty"`
	Candidates []Candidate    `json:"candidates,omitempty"`
	Added      []CandidateAdd `json:"added,omitempty"`
}

// Add adds one reply's results; with keepVarbinds false it leaves its
// varbinds out (a walk printed as it comes keeps none).
func (r *TaskResult) Add(rep TaskReply, keepVarbinds bool) {
	r.Poller = rep.Poller
	r.Samples = append(r.Samples, rep.Samples...)
	r.Candidates = append(r.Candidates, rep.Candidates...)
	if rep.Ping != nil {
		r.Ping = rep.Ping
	}
	if keepVarbinds {
		r.Varbinds = append(r.Varbinds, rep.Varbinds...)
	}
}

// TaskPrinter prints a task's replies for 'meshmon task': a walk's objects
// as they come, a discovery's progress on Progress (at most once a second,
// and its last), the rest once the task is done (Finish). Its methods are
// not safe for concurrent use.
type TaskPrinter struct {
	Out, Progress io.Writer
	JSON          bool             // Finish prints the result as JSON; nothing is streamed
	Now           func() time.Time // NewTaskPrinter sets time.Now
	Result        TaskResult
	req           TaskRequest
	lastProgress  time.Time
}

// NewTaskPrinter prints the replies to req on out, and a discovery's
// progress on progress.
func NewTaskPrinter(req TaskRequest, asJSON bool, out, progress io.Writer) *TaskPrinter {
	return &TaskPrinter{Out: out, Progress: progress, JSON: asJSON, Now: time.Now, req: req,
		Result: TaskResult{ID: req.ID, Site: req.Site, Verb: req.Verb}}
}

// Reply takes one reply of the task.
func (p *TaskPrinter) Reply(r TaskReply) {
	streamed := p.req.Verb == TaskWalk && !p.JSON
	if streamed {
		WriteVarbinds(p.Out, r.Varbinds)
	}
	p.Result.Add(r, !streamed)
	pr := r.Progress
	if pr == nil || pr.Phase == TaskStarted || p.req.Verb != TaskDiscover {
		return
	}
	if now := p.Now(); now.Sub(p.lastProgress) >= time.Second || r.Done {
		p.lastProgress = now
		WriteProgress(p.Progress, p.req, *pr)
	}
}

// Finish prints the result: WriteTaskResult, or with JSON the TaskResult.
func (p *TaskPrinter) Finish() error {
	if !p.JSON {
		WriteTaskResult(p.Out, &p.Result)
		return nil
	}
	SortCandidates(p.Result.Candidates)
	enc := json.NewEncoder(p.Out)
	enc.SetIndent("", "  ")
	return enc.Encode(p.Result)
}

// WriteTaskResult prints a finished task's result for people.
func WriteTaskResult(w io.Writer, r *TaskResult) {
	SortCandidates(r.Candidates)
	switch r.Verb {
	case TaskPollNow:
		WriteSamples(w, r.Samples)
	case TaskSNMPGet, TaskWalk:
		WriteVarbinds(w, r.Varbinds)
	case TaskPing:
		if p := r.Ping; p != nil {
			fmt.Fprintf(w, "%s answers from site %s: %d/%d replies, rtt avg %.2f ms\n", p.Address, r.Site, p.Received, p.Sent, p.RTTAvgMS)
		}
	case TaskDiscover:
		WriteCandidates(w, r.Candidates)
		for _, a := range r.Added {
			line := fmt.Sprintf("device %s (%s): %s", a.Name, a.Address, a.Result)
			if a.Error != "" {
				line += ": " + a.Error
			}
			fmt.Fprintln(w, line)
		}
	}
}

// WriteProgress prints a long task's progress in one line.
func WriteProgress(w io.Writer, req TaskRequest, p TaskProgress) {
	fmt.Fprintf(w, "%s %s at %s: %s %d/%d, %d found\n", req.Verb, req.Target(), req.Site, p.Phase, p.Done, p.Total, p.Found)
}

// WriteVarbinds prints SNMP objects, one a line.
func WriteVarbinds(w io.Writer, vbs []Varbind) {
	for _, v := range vbs {
		fmt.Fprintf(w, "%s = %s: %s\n", v.OID, v.Type, v.Value)
	}
}

// WriteSamples prints samples, one a line, with their interfaces below.
func WriteSamples(w io.Writer, ss []Sample) {
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

// WriteCandidates prints the candidates that answered SNMP as a table,
// and how many more answered ICMP only. NEIGHBORS names a candidate's
// first two LLDP or CDP neighbours and counts the rest ("sw2,sw3 +4";
// "-" for none).
func WriteCandidates(w io.Writer, cs []Candidate) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ADDRESS\tNAME\tICMP\tSNMP\tSYSOBJECTID\tIFS\tCREDENTIAL\tNEIGHBORS\tSYSDESCR")
	icmpOnly := 0
	for _, c := range cs {
		if !c.SNMP {
			icmpOnly++
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\t%d\t%s\t%s\t%s\n", c.Address, c.Name, c.ICMP, c.Version, c.SysObjectID, c.Interfaces, c.Credential,
			neighborNames(c.Neighbors, 2), firstLine(c.SysDescr))
	}
	_ = tw.Flush()
	if icmpOnly > 0 {
		fmt.Fprintf(w, "%d more addresses answer ICMP only (--json lists them)\n", icmpOnly)
	}
}

// neighborNames names up to n neighbours (sys name, else chassis id, else
// address) and counts the others.
func neighborNames(ns []Neighbor, n int) string {
	if len(ns) == 0 {
		return "-"
	}
	var names []string
	for _, nb := range ns[:min(n, len(ns))] {
		names = append(names, cmp.Or(nb.SysName, nb.ChassisID, nb.Address, "?"))
	}
	s := strings.Join(names, ",")
	if len(ns) > n {
		s += fmt.Sprintf(" +%d", len(ns)-n)
	}
	return s
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
