package main

import (
	"context"
	"io"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
)

// taskOutput prints a task's replies: a walk's objects as they come, the
// progress of a discovery on stderr (once a second), the rest once the
// task is done (meshmon.WriteTaskResult).
type taskOutput struct {
	req      meshmon.TaskRequest
	json     bool
	out      io.Writer
	progress io.Writer
	lastProg time.Time
	result   meshmon.TaskResult
}

func newTaskOutput(c *cli.Context, req meshmon.TaskRequest) *taskOutput {
	return &taskOutput{req: req, json: c.Bool("json"), out: os.Stdout, progress: os.Stderr,
		result: meshmon.TaskResult{ID: req.ID, Site: req.Site, Verb: req.Verb}}
}

func (o *taskOutput) reply(r meshmon.TaskReply) {
	streamed := o.req.Verb == meshmon.TaskWalk && !o.json
	if streamed {
		meshmon.WriteVarbinds(o.out, r.Varbinds)
	}
	o.result.Add(r, !streamed)
	if p := r.Progress; p != nil && p.Phase != bus.TaskStarted && o.req.Verb == meshmon.TaskDiscover && (time.Since(o.lastProg) >= time.Second || r.Done) {
		o.lastProg = time.Now()
		meshmon.WriteProgress(o.progress, o.req, *p)
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
	if o.json {
		meshmon.SortCandidates(o.result.Candidates)
		return printJSON(o.out, o.result)
	}
	meshmon.WriteTaskResult(o.out, &o.result)
	return nil
}
