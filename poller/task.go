package poller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/internal/backoff"
)

// TaskServer is the transport of on-demand tasks (package bus/pollerlink
// over NATS): Serve delivers each task of the poller's site to h (the
// poller of that name) until ctx is done, and sends h's replies back to the requester.
type TaskServer interface {
	Serve(ctx context.Context, site, poller string, h TaskHandler) error
}

// TaskHandler is what a TaskServer asks of a poller. Its methods may run
// concurrently, several tasks at once.
type TaskHandler interface {
	// Owns reports whether this poller polls the device: only the owner
	// answers a device task.
	Owns(device string) bool
	// Whois tells who owns a device of the site, by what this poller
	// knows of its group, and whether the site has the device at all.
	Whois(device string) (owner string, known bool)
	// Task runs req, calling send for each reply but the last (the
	// server sends the final one with Task's error). send is called from
	// one goroutine at a time.
	Task(ctx context.Context, req meshmon.TaskRequest, send func(meshmon.TaskReply) error) error
	// Refused records a request the site did not run, and why (bad
	// input, no such device, no owner, busy). Every poller that sees a
	// device task refused records it, under one message id.
	Refused(req meshmon.TaskRequest, reason error)
}

// Owns reports whether the poller polls the device now.
func (p *Poller) Owns(device string) bool {
	_, ok := p.device(device)
	return ok
}

// device is the device of that name the poller polls.
func (p *Poller) device(name string) (meshmon.Device, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.devices[name]
	if !ok {
		return meshmon.Device{}, false
	}
	return *t.dev, true
}

// Whois tells who owns the device by the newest assignment this poller
// knows; without a group the poller owns every device of its site.
func (p *Poller) Whois(device string) (owner string, known bool) {
	if p.group == nil {
		if p.Owns(device) {
			return p.cfg.Name, true
		}
		return "", false
	}
	p.gmu.Lock()
	defer p.gmu.Unlock()
	_, known = p.gs.inventory[device]
	return p.gs.latest.Owners[device], known
}

// siteDevices are the devices of the site's inventory this poller knows:
// all of them in a group, else those it polls (which are all).
func (p *Poller) siteDevices() []meshmon.Device {
	var out []meshmon.Device
	if p.group != nil {
		p.gmu.Lock()
		for _, d := range p.gs.inventory {
			out = append(out, *d)
		}
		p.gmu.Unlock()
	} else {
		p.mu.Lock()
		for _, t := range p.devices {
			out = append(out, *t.dev)
		}
		p.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b meshmon.Device) int { return cmpString(a.Name, b.Name) })
	return out
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Task runs one on-demand task and records it as an audit event (kind
// task) in the site's events. It returns ErrTaskNotOwned for a device task
// of a device the poller does not poll, an error wrapping ErrTaskFailed
// when the task ran and failed, and ctx's error when it was cancelled or
// timed out.
func (p *Poller) Task(ctx context.Context, req meshmon.TaskRequest, send func(meshmon.TaskReply) error) error {
	start := time.Now()
	found, err := p.runTask(ctx, req, send)
	if errors.Is(err, ErrTaskNotOwned) {
		return err // not ours: another poller answers and records it
	}
	if ctx.Err() != nil && err != nil {
		err = ctx.Err()
	}
	p.audit(req, time.Since(start), found, err)
	return err
}

func (p *Poller) runTask(ctx context.Context, req meshmon.TaskRequest, send func(meshmon.TaskReply) error) (found int, err error) {
	if err := req.Validate(); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrTaskFailed, err)
	}
	switch req.Verb {
	case meshmon.TaskPollNow:
		return 0, p.pollNow(ctx, req, send)
	case meshmon.TaskWalk:
		return p.walk(ctx, req, send)
	case meshmon.TaskPing:
		return 0, p.pingTask(ctx, req, send)
	case meshmon.TaskSNMPGet:
		return 0, p.snmpGet(ctx, req, send)
	case meshmon.TaskDiscover:
		return p.discover(ctx, req, send)
	}
	return 0, fmt.Errorf("%w: verb %q is not a task a poller runs", ErrTaskFailed, req.Verb)
}

// pollNow polls the device now, as its scheduled poll would: its samples
// and events go out on their usual subjects (with message ids of the
// poll's own time, not of an interval slot) and its state moves on; the
// reply carries the samples. It waits for a poll of the device that is
// running, and the scheduled poll it holds up runs after it.
func (p *Poller) pollNow(ctx context.Context, req meshmon.TaskRequest, send func(meshmon.TaskReply) error) error {
	t, err := p.takeNow(ctx, req.Device)
	if err != nil {
		return err
	}
	t.check = false // an operator asking for a poll gets all of it
	samples := p.poll(ctx, t, p.cfg.Now())
	p.finishNow(req.Device, t)
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := send(meshmon.TaskReply{Samples: samples}); err != nil {
		return err
	}
	if len(samples) == 0 {
		return fmt.Errorf("%w: device %s answered no probe (its events say why)", ErrTaskFailed, req.Device)
	}
	return nil
}

// takeNow holds the device busy for a poll-now, once no other poll of it
// runs. It returns ErrTaskNotOwned if the poller does not poll it.
func (p *Poller) takeNow(ctx context.Context, name string) (*target, error) {
	b := backoff.New(10*time.Millisecond, 200*time.Millisecond)
	for {
		p.mu.Lock()
		t, ok := p.devices[name]
		if !ok {
			p.mu.Unlock()
			return nil, ErrTaskNotOwned
		}
		if !p.busy[name] {
			p.busy[name], t.pollingNow = true, true
			p.mu.Unlock()
			return t, nil
		}
		p.mu.Unlock()
		if !b.Wait(ctx) {
			return nil, ctx.Err()
		}
	}
}

// finishNow releases a device after a poll-now: the scheduled poll the
// dispatcher skipped meanwhile, if any, runs now; a device that changed or
// left meanwhile is dealt with as finish does.
func (p *Poller) finishNow(name string, t *target) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t.pollingNow = false
	missed := t.missed
	t.missed = nil
	if t.replaced || t.deleted {
		p.retire(name, t)
		return
	}
	delete(p.busy, name)
	if missed != nil {
		p.sched.add(name, t.gen, p.cfg.Now(), missed.slot)
	}
}

// walkChunk is how many objects a walk sends per reply.
const walkChunk = 100

// walk walks the device's subtree and streams the objects back in chunks.
func (p *Poller) walk(ctx context.Context, req meshmon.TaskRequest, send func(meshmon.TaskReply) error) (int, error) {
	d, ok := p.device(req.Device)
	if !ok {
		return 0, ErrTaskNotOwned
	}
	if d.SNMP == nil {
		return 0, fmt.Errorf("%w: device %s has no SNMP settings", ErrTaskFailed, d.Name)
	}
	pr, err := NewSNMPProber(d)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrTaskFailed, err)
	}
	var buf []meshmon.Varbind
	n := 0
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		err := send(meshmon.TaskReply{Varbinds: buf, Progress: &meshmon.TaskProgress{Phase: "walk", Done: n}})
		buf = nil
		return err
	}
	err = pr.Walk(ctx, req.OIDs[0], func(v meshmon.Varbind) error {
		buf = append(buf, v)
		n++
		if len(buf) >= walkChunk {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil && ctx.Err() == nil {
		err = fmt.Errorf("%w: device %s: %w", ErrTaskFailed, d.Name, err)
	}
	return n, err
}

// pingTask pings an address from the site.
func (p *Poller) pingTask(ctx context.Context, req meshmon.TaskRequest, send func(meshmon.TaskReply) error) error {
	if p.icmpDenied != nil {
		return fmt.Errorf("%w: poller %s may not send ICMP: %w", ErrTaskFailed, p.cfg.Name, p.icmpDenied)
	}
	r := p.icmp.Ping(ctx, req.Address, 2*time.Second)
	if err := ctx.Err(); err != nil {
		return err
	}
	res := &meshmon.PingResult{Address: req.Address, OK: r.OK, Sent: r.Sent, Received: r.Received, RTTAvgMS: ms(r.RTTAvg), Reason: r.Reason}
	if err := send(meshmon.TaskReply{Ping: res}); err != nil {
		return err
	}
	if !r.OK {
		return fmt.Errorf("%w: %s does not answer ICMP echo: %s", ErrTaskFailed, req.Address, r.Reason)
	}
	return nil
}

// snmpGet reads OIDs at an address with the first credential that
// answers: the inventory device's at that address, the request's, then
// the site's.
func (p *Poller) snmpGet(ctx context.Context, req meshmon.TaskRequest, send func(meshmon.TaskReply) error) error {
	var last error
	for _, c := range p.credentials(req) {
		d := probeDevice(req.Address, c.snmp, req.Port, 2*time.Second)
		pr, err := NewSNMPProber(d)
		if err != nil {
			last = err
			continue
		}
		vbs, err := pr.Get(ctx, req.OIDs)
		if err == nil {
			return send(meshmon.TaskReply{Varbinds: vbs})
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		last = err
	}
	if last == nil {
		last = errors.New("no SNMP credentials to try: the request gave none and the site's inventory has none")
	}
	return fmt.Errorf("%w: %s: %w", ErrTaskFailed, req.Address, last)
}

// credential is SNMP settings to try, and the reference a candidate gives
// of it (meshmon.Candidate.Credential).
type credential struct {
	snmp meshmon.SNMP
	ref  string
}

// credentials are what a task tries at an address: the inventory device
// at it, the request's, then every distinct setting of the site's
// inventory.
func (p *Poller) credentials(req meshmon.TaskRequest) []credential {
	var out []credential
	seen := map[string]bool{}
	add := func(s meshmon.SNMP, ref string) {
		s.Port = 0
		k := fmt.Sprintf("%+v", s)
		if !seen[k] {
			seen[k] = true
			out = append(out, credential{snmp: s, ref: ref})
		}
	}
	devs := p.siteDevices()
	for _, d := range devs {
		if d.Address == req.Address && d.SNMP != nil {
			add(*d.SNMP, "device:"+d.Name)
		}
	}
	for i, s := range req.Credentials {
		add(s, fmt.Sprintf("request:%d", i))
	}
	for _, d := range devs {
		if d.SNMP != nil {
			add(*d.SNMP, "device:"+d.Name)
		}
	}
	return out
}

// probeDevice is a device to probe address with s on port (0: 161), one
// try of timeout.
func probeDevice(address string, s meshmon.SNMP, port int, timeout time.Duration) meshmon.Device {
	s.Port = port
	return meshmon.Device{Name: "task", Address: address, Checks: []string{meshmon.CheckSNMP}, SNMP: &s,
		Timeout: meshmon.Duration(timeout)}
}

// audit records a task run as an event of kind task, on
// ev.<site>.<device>.task for a device task and ev.<site>._site.task for a
// site task.
func (p *Poller) audit(req meshmon.TaskRequest, took time.Duration, found int, err error) {
	a := &meshmon.TaskAudit{ID: req.ID, Verb: req.Verb, By: req.By, Target: req.Target(), Result: "ok", Took: took}
	if req.Verb == meshmon.TaskDiscover {
		a.Found = found
	}
	if err != nil {
		a.Result, a.Error = TaskCode(err), err.Error()
	}
	now := p.cfg.Now()
	p.commitAudit(req, a, now, "task/"+req.ID)
}

// Refused records a request the site refused, with result refused and
// the reason. Its message id is a function of the task's id and device
// alone, so the records of the pollers that all refuse one device task
// are one.
func (p *Poller) Refused(req meshmon.TaskRequest, reason error) {
	a := &meshmon.TaskAudit{ID: req.ID, Verb: req.Verb, By: req.By, Target: req.Target(), Result: meshmon.TaskCodeRefused, Error: reason.Error()}
	p.commitAudit(req, a, time.Time{}, "task/"+req.ID+"/refused")
}

// commitAudit commits the audit event of a, its id made of key and slot.
func (p *Poller) commitAudit(req meshmon.TaskRequest, a *meshmon.TaskAudit, slot time.Time, key string) {
	d := meshmon.Device{Name: meshmon.SiteTaskDevice, Address: req.Address}
	if meshmon.IsDeviceTask(req.Verb) && meshmon.ValidateName("device", req.Device) == nil {
		d = meshmon.Device{Name: req.Device}
		if dev, ok := p.device(req.Device); ok {
			d = dev
		}
	}
	msg := fmt.Sprintf("task %s %s by %s: %s", req.Verb, a.Target, orUnknown(req.By), a.Result)
	if a.Error != "" {
		msg += ": " + a.Error
	}
	m, err := p.eventMessage(&d, slot, p.cfg.Now(), key, meshmon.EventData{Kind: meshmon.KindTask, Check: meshmon.KindTask,
		Severity: meshmon.SeverityInfo, Message: msg, Task: a})
	if err != nil {
		p.log.Error("build task audit event", "task", req.ID, "err", err)
		return
	}
	_ = p.commit([]meshmon.Message{m}, nil) // commit logs a failure
}

func orUnknown(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}

// TaskCode classifies a task's error for its reply and audit record.
func TaskCode(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrTaskNotOwned):
		return meshmon.TaskCodeNoDevice
	case errors.Is(err, context.DeadlineExceeded):
		return meshmon.TaskCodeTimeout
	case errors.Is(err, context.Canceled):
		return meshmon.TaskCodeCancelled
	}
	return meshmon.TaskCodeFailed
}
