package bus

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/meshmon/meshmon"
)

// On-demand tasks (docs/tasks.md): an operator's request on
// ctl.<site>.req.<user>.<verb> in the tenant's account (or
// ctl.<site>.ops.<user>.<verb>, from the ops account), which central
// carries over the site's leaf link to the site's pollers; the replies go
// back on ctl.<site>.reply.<id> the same way. The site takes the requester
// from the subject, which the requester's permissions pin to its own
// name. Device verbs reach every poller of the site and only the device's
// owner answers; site verbs reach one poller of the site's queue group.

// SiteInboxPrefix is the inbox prefix of a connection at central that
// reaches a site's JetStream domain across its leaf link ('device
// --site'): the site's link carries back the site's task replies,
// ctl.<site>.reply.>, and no other inbox.
func SiteInboxPrefix(site string) string { return "ctl." + site + ".reply" }

// TaskQueue is the queue group of a site's pollers for site verbs.
const TaskQueue = "pollers"

// MaxTaskTimeout bounds how long a site lets a task run.
const MaxTaskTimeout = 30 * time.Minute

// MaxConcurrentTasks is how many tasks one poller runs at once; more are
// refused with a busy error.
const MaxConcurrentTasks = 8

// TaskHandler runs the tasks a TaskServer takes (poller.TaskHandler; see
// there for its contract).
type TaskHandler interface {
	Owns(device string) bool
	Whois(device string) (owner string, known bool)
	Task(ctx context.Context, req meshmon.TaskRequest, send func(meshmon.TaskReply) error) error
	Refused(req meshmon.TaskRequest, reason error)
}

// TaskServer serves a poller's tasks over its connection to its site peer.
type TaskServer struct {
	nc   *nats.Conn
	log  *slog.Logger
	code func(error) string // classifies a task's error
}

// NewTaskServer returns a server of tasks over nc; code classifies the
// handler's errors (meshmon.TaskCode*).
func NewTaskServer(nc *nats.Conn, code func(error) string, log *slog.Logger) *TaskServer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &TaskServer{nc: nc, log: log, code: code}
}

// serving is one Serve's running tasks.
type serving struct {
	s            *TaskServer
	site, poller string
	h            TaskHandler
	ctx          context.Context
	wg           sync.WaitGroup
	mu           sync.Mutex
	running      map[string]runningTask
}

// runningTask is a task being run: its cancel, and who may call it.
type runningTask struct {
	cancel context.CancelFunc
	by     string
}

// Serve subscribes the poller to its site's task subjects and runs each
// task it is to answer with h, until ctx is done; then it stops the tasks
// that run and waits for them.
func (s *TaskServer) Serve(ctx context.Context, site, poller string, h TaskHandler) error {
	sv := &serving{s: s, site: site, poller: poller, h: h, ctx: ctx, running: map[string]runningTask{}}
	var subs []*nats.Subscription
	defer func() {
		for _, sub := range subs {
			_ = sub.Unsubscribe()
		}
		sv.mu.Lock()
		for _, r := range sv.running {
			r.cancel()
		}
		sv.mu.Unlock()
		sv.wg.Wait()
	}()
	for _, v := range []string{meshmon.TaskPollNow, meshmon.TaskWalk, meshmon.TaskCancel} {
		sub, err := s.nc.Subscribe(meshmon.TaskVerbSubject(site, v), sv.handle)
		if err != nil {
			return fmt.Errorf("subscribe to tasks: %w", err)
		}
		subs = append(subs, sub)
	}
	for _, v := range []string{meshmon.TaskPing, meshmon.TaskSNMPGet, meshmon.TaskDiscover, meshmon.TaskWhois} {
		sub, err := s.nc.QueueSubscribe(meshmon.TaskVerbSubject(site, v), TaskQueue, sv.handle)
		if err != nil {
			return fmt.Errorf("subscribe to tasks: %w", err)
		}
		subs = append(subs, sub)
	}
	// The subscriptions outlive reconnects: a flush that fails while the
	// peer is away is no reason to stop.
	_ = s.nc.FlushTimeout(DefaultReach)
	<-ctx.Done()
	return nil
}

// handle takes one request. The requester is the subject's user, never
// what the request says (meshmon.TaskRequester). A request the site will
// not run is refused: answered with TaskCodeRefused and recorded
// (TaskHandler.Refused). A device task is refused by every poller that
// sees it refused (they know the same inventory) and their records share
// one message id; one that another poller owns is left to it.
func (sv *serving) handle(m *nats.Msg) {
	by, err := meshmon.TaskRequester(m.Subject)
	if err != nil {
		return // not a request: the subscriptions take only requests
	}
	var req meshmon.TaskRequest
	if err := json.Unmarshal(m.Data, &req); err != nil {
		sum := sha256.Sum256(m.Data)
		req = meshmon.TaskRequest{ID: fmt.Sprintf("invalid-%x", sum[:8]), Verb: lastToken(m.Subject), Site: sv.site}
		sv.refuse(req, by, fmt.Errorf("the request is not a task request (JSON): %w", err))
		return
	}
	req.By = by
	switch req.Verb {
	case meshmon.TaskCancel:
		sv.mu.Lock()
		if r, ok := sv.running[req.ID]; ok && r.by == by {
			r.cancel() // only its requester stops a task
		}
		sv.mu.Unlock()
		return
	case meshmon.TaskWhois:
		sv.whois(req)
		return
	}
	if err := sv.check(m.Subject, req); err != nil {
		sv.refuse(req, by, err)
		return
	}
	if meshmon.IsDeviceTask(req.Verb) && !sv.h.Owns(req.Device) {
		switch owner, known := sv.h.Whois(req.Device); {
		case !known:
			sv.refuse(req, by, fmt.Errorf("site %s has no device %s", sv.site, req.Device))
		case owner == "":
			sv.refuse(req, by, fmt.Errorf("no poller owns device %s at site %s", req.Device, sv.site))
		case owner == sv.poller:
			// The assignment names this poller, which has not taken
			// the device on yet.
			sv.refuse(req, by, fmt.Errorf("poller %s is taking device %s on; try again in a moment", sv.poller, req.Device))
		}
		return // the owner answers
	}
	timeout := min(time.Duration(req.Timeout), MaxTaskTimeout)
	if timeout <= 0 {
		timeout = MaxTaskTimeout
	}
	ctx, cancel := context.WithTimeout(sv.ctx, timeout)
	sv.mu.Lock()
	busy := len(sv.running) >= MaxConcurrentTasks
	if !busy {
		sv.running[req.ID] = runningTask{cancel: cancel, by: by}
	}
	sv.mu.Unlock()
	if busy {
		cancel()
		sv.refuse(req, by, fmt.Errorf("poller %s is busy: %d tasks run already; try again later", sv.poller, MaxConcurrentTasks))
		return
	}
	sv.wg.Go(func() { sv.run(ctx, cancel, req) })
}

// check checks a request against the rules and its subject.
func (sv *serving) check(subject string, req meshmon.TaskRequest) error {
	if req.Site != sv.site {
		return fmt.Errorf("site %q: the request came for site %s", req.Site, sv.site)
	}
	if v := lastToken(subject); req.Verb != v {
		return fmt.Errorf("verb %q: the request came on the subject of %s", req.Verb, v)
	}
	return req.Validate()
}

// whois answers who owns a device; when the site cannot run the device
// task it precedes (no such device, no owner), it records that task as
// refused.
func (sv *serving) whois(req meshmon.TaskRequest) {
	if err := req.Validate(); err != nil {
		sv.refuse(req, req.By, err)
		return
	}
	owner, known := sv.h.Whois(req.Device)
	if req.For != "" && (!known || owner == "") {
		t := req
		t.ID, t.Verb, t.For = strings.TrimSuffix(req.ID, WhoisSuffix), req.For, ""
		reason := fmt.Errorf("site %s has no device %s", sv.site, req.Device)
		if known {
			reason = fmt.Errorf("no poller owns device %s at site %s", req.Device, sv.site)
		}
		sv.h.Refused(t, reason)
	}
	sv.reply(req, meshmon.TaskReply{ID: req.ID, Poller: sv.poller, Done: true, Owner: owner, Known: known})
}

// WhoisSuffix ends the id of the whois that precedes a device task.
const WhoisSuffix = "-whois"

// refuse answers a request the site will not run and records it. A
// request whose id is no valid id is not answered: its replies' subject
// would reach beyond its requester's (a dotted id).
func (sv *serving) refuse(req meshmon.TaskRequest, by string, reason error) {
	req.By = by
	sv.h.Refused(req, reason)
	sv.s.log.Info("task refused", "id", req.ID, "verb", req.Verb, "by", by, "target", req.Target(), "err", reason)
	if meshmon.ValidateTaskID(req.ID) != nil {
		return
	}
	sv.reply(req, meshmon.TaskReply{ID: req.ID, Poller: sv.poller, Done: true, Code: meshmon.TaskCodeRefused, Error: reason.Error()})
}

func lastToken(subject string) string { return subject[strings.LastIndexByte(subject, '.')+1:] }

// run runs one task and sends its replies, the last with Done.
func (sv *serving) run(ctx context.Context, cancel context.CancelFunc, req meshmon.TaskRequest) {
	defer func() {
		cancel()
		sv.mu.Lock()
		delete(sv.running, req.ID)
		sv.mu.Unlock()
	}()
	seq := 0
	send := func(r meshmon.TaskReply) error {
		seq++
		r.ID, r.Poller, r.Seq = req.ID, sv.poller, seq
		return sv.reply(req, r)
	}
	// An acknowledgement first: the requester knows the site took the
	// task, however long its first result takes.
	err := send(meshmon.TaskReply{Progress: &meshmon.TaskProgress{Phase: meshmon.TaskStarted}})
	if err == nil {
		err = sv.h.Task(ctx, req, send)
	}
	final := meshmon.TaskReply{Done: true}
	if err != nil {
		final.Error, final.Code = err.Error(), sv.s.code(err)
	}
	_ = send(final)
	sv.s.log.Info("task", "id", req.ID, "verb", req.Verb, "by", req.By, "target", req.Target(), "err", err)
}

// reply sends r on the replies subject of req, its requester's
// (meshmon.TaskReplySubjectBy).
func (sv *serving) reply(req meshmon.TaskRequest, r meshmon.TaskReply) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return sv.s.nc.Publish(meshmon.TaskReplySubjectBy(sv.site, req.By, req.ID), b)
}

// TaskOptions are how RunTask waits.
type TaskOptions struct {
	// Reach is how long a site has to answer at all (default 5s): no
	// answer in that time is ErrSiteOffline.
	Reach time.Duration
	// Idle is, once the task answered, the longest silence before it is
	// given up for lost (0: until its timeout). Discovery reports its
	// progress twice a second.
	Idle time.Duration
	// OnReply is called with each reply, the last included, from one
	// goroutine.
	OnReply func(meshmon.TaskReply)
	// OpsTenant, for a user of the ops account, is the tenant whose site
	// runs the task: the requests go on the ops account's import of that
	// tenant's tasks (meshmon.TaskOpsPrefix), as the ops realm's.
	OpsTenant string
}

// route is where a requester's requests and replies go.
type route struct{ opsTenant string }

func (rt route) request(req meshmon.TaskRequest, verb string) string {
	if rt.opsTenant == "" {
		return meshmon.TaskSubject(req.Site, req.By, verb)
	}
	return meshmon.TaskOpsPrefix(rt.opsTenant) + meshmon.TaskOpsSubject(req.Site, req.By, verb)
}

func (rt route) replies(req meshmon.TaskRequest) string {
	if rt.opsTenant == "" {
		return meshmon.TaskReplySubject(req.Site, req.ID)
	}
	return meshmon.TaskOpsPrefix(rt.opsTenant) + meshmon.TaskReplySubjectBy(req.Site, meshmon.TaskRealmOps+":"+req.By, req.ID)
}

// DefaultReach is TaskOptions.Reach's default.
const DefaultReach = 5 * time.Second

// RunTask runs req at its site over nc and waits for its replies until the
// last, req.Timeout, or the end of ctx; when it gives up it asks the site
// to stop the task. It fails with an error wrapping ErrSiteOffline,
// ErrNoOwner, ErrTaskDevice, ErrTaskRefused, ErrTaskTimeout, ErrTaskFailed
// (a reply lost too), or ctx's error. req.By must be the user of nc's
// credential: the requests go on that user's subject.
func RunTask(ctx context.Context, nc *nats.Conn, req meshmon.TaskRequest, opt TaskOptions) error {
	if err := req.Validate(); err != nil {
		return err
	}
	if err := meshmon.ValidateName("user", req.By); err != nil {
		return fmt.Errorf("task %s: the requester (by): %w", req.Verb, err)
	}
	if opt.Reach <= 0 {
		opt.Reach = DefaultReach
	}
	if opt.OnReply == nil {
		opt.OnReply = func(meshmon.TaskReply) {}
	}
	if opt.OpsTenant != "" {
		if err := meshmon.ValidateName("tenant", opt.OpsTenant); err != nil {
			return err
		}
	}
	rt := route{opsTenant: opt.OpsTenant}
	if meshmon.IsDeviceTask(req.Verb) {
		if err := whois(ctx, nc, rt, req, opt.Reach); err != nil {
			return err
		}
	}
	replies, stop, err := send(nc, rt, req)
	if err != nil {
		return err
	}
	defer stop()
	err = waitTask(ctx, req, opt, replies)
	if err != nil && !errors.Is(err, ErrTaskFailed) && !errors.Is(err, ErrSiteOffline) {
		cancelTask(nc, rt, req)
	}
	return err
}

// waitTask reads the replies of req until the last.
func waitTask(ctx context.Context, req meshmon.TaskRequest, opt TaskOptions, replies <-chan *nats.Msg) error {
	// The site stops the task at its timeout and says so; the requester
	// gives it the reach on top before it gives up on its own.
	deadline := time.Now().Add(time.Duration(req.Timeout) + opt.Reach)
	if req.Timeout <= 0 {
		deadline = time.Now().Add(MaxTaskTimeout + opt.Reach)
	}
	answered := false
	seq := map[string]int{} // the last Seq of each poller's replies
	for {
		wait := time.Until(deadline)
		if !answered {
			wait = min(wait, opt.Reach)
		} else if opt.Idle > 0 {
			wait = min(wait, opt.Idle)
		}
		t := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
			switch {
			case !answered && req.Verb == meshmon.TaskPollNow || !answered && req.Verb == meshmon.TaskWalk:
				return fmt.Errorf("%w: site %s: the poller that owns device %s did not answer in %s", ErrSiteOffline, req.Site, req.Device, opt.Reach)
			case !answered:
				return fmt.Errorf("%w: site %s is offline (no reply in %s)", ErrSiteOffline, req.Site, opt.Reach)
			case time.Until(deadline) > 0:
				return fmt.Errorf("%w: site %s stopped answering task %s (no reply in %s)", ErrTaskTimeout, req.Site, req.Verb, opt.Idle)
			}
			return fmt.Errorf("%w: task %s at site %s did not finish in %s", ErrTaskTimeout, req.Verb, req.Site, time.Duration(req.Timeout)+opt.Reach)
		case m := <-replies:
			t.Stop()
			var r meshmon.TaskReply
			if err := json.Unmarshal(m.Data, &r); err != nil || r.ID != req.ID {
				continue
			}
			answered = true
			if r.Seq > 0 {
				// One poller runs a task and numbers its replies: a gap
				// is a reply lost (a slow consumer), and the result
				// would not be whole.
				if r.Seq != seq[r.Poller]+1 {
					return fmt.Errorf("%w: %s at site %s: reply %d of poller %s came after reply %d; a reply was lost",
						ErrTaskFailed, req.Verb, req.Site, r.Seq, r.Poller, seq[r.Poller])
				}
				seq[r.Poller] = r.Seq
			}
			opt.OnReply(r)
			if !r.Done {
				continue
			}
			if r.Error != "" {
				return taskError(req, r)
			}
			return nil
		}
	}
}

func taskError(req meshmon.TaskRequest, r meshmon.TaskReply) error {
	switch r.Code {
	case meshmon.TaskCodeTimeout:
		return fmt.Errorf("%w: task %s at site %s (poller %s): %s", ErrTaskTimeout, req.Verb, req.Site, r.Poller, r.Error)
	case meshmon.TaskCodeNoDevice:
		return fmt.Errorf("%w: device %s at site %s", ErrTaskDevice, req.Device, req.Site)
	case meshmon.TaskCodeRefused:
		return fmt.Errorf("%w: %s at site %s (poller %s): %s", ErrTaskRefused, req.Verb, req.Site, r.Poller, r.Error)
	}
	return fmt.Errorf("%w: %s at site %s (poller %s): %s", ErrTaskFailed, req.Verb, req.Site, r.Poller, r.Error)
}

// send subscribes to the replies of req and sends it; stop unsubscribes.
func send(nc *nats.Conn, rt route, req meshmon.TaskRequest) (<-chan *nats.Msg, func(), error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, nil, err
	}
	replies := make(chan *nats.Msg, 256)
	sub, err := nc.ChanSubscribe(rt.replies(req), replies)
	if err != nil {
		return nil, nil, fmt.Errorf("task %s: %w", req.Verb, err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	subject := rt.request(req, req.Verb)
	if err := nc.Publish(subject, b); err != nil {
		_ = sub.Unsubscribe()
		return nil, nil, fmt.Errorf("task %s: %w", req.Verb, err)
	}
	// A request refused for want of permission fails the flush with the
	// server's error.
	if err := nc.FlushTimeout(DefaultReach); err != nil {
		_ = sub.Unsubscribe()
		return nil, nil, fmt.Errorf("task %s at site %s: %w", req.Verb, req.Site, err)
	}
	// (The connection's last error stays: match this subject's only.
	// Permissions do not change while connected, so a violation there is
	// this request's.)
	if err := nc.LastError(); err != nil && strings.Contains(err.Error(), fmt.Sprintf("Permissions Violation for Publish to %q", subject)) {
		_ = sub.Unsubscribe()
		return nil, nil, fmt.Errorf("task %s at site %s: %w", req.Verb, req.Site, err)
	}
	return replies, func() { _ = sub.Unsubscribe() }, nil
}

// whois asks any poller of the site who owns the device.
func whois(ctx context.Context, nc *nats.Conn, rt route, req meshmon.TaskRequest, reach time.Duration) error {
	q := meshmon.TaskRequest{ID: req.ID + WhoisSuffix, Verb: meshmon.TaskWhois, For: req.Verb, Site: req.Site, Device: req.Device, By: req.By}
	replies, stop, err := send(nc, rt, q)
	if err != nil {
		return err
	}
	defer stop()
	t := time.NewTimer(reach)
	defer t.Stop()
	var r meshmon.TaskReply
	for r.ID != q.ID {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return fmt.Errorf("%w: site %s is offline (no reply in %s)", ErrSiteOffline, req.Site, reach)
		case m := <-replies:
			if err := json.Unmarshal(m.Data, &r); err != nil {
				return fmt.Errorf("task %s: site %s answered who owns %s with %q: %w", req.Verb, req.Site, req.Device, m.Data, err)
			}
		}
	}
	switch {
	case !r.Known:
		return fmt.Errorf("%w: site %s has no device %s", ErrTaskDevice, req.Site, req.Device)
	case r.Owner == "":
		return fmt.Errorf("%w: no poller owns device %s at site %s", ErrNoOwner, req.Device, req.Site)
	}
	return nil
}

// cancelTask asks the site to stop req; best effort.
func cancelTask(nc *nats.Conn, rt route, req meshmon.TaskRequest) {
	b, _ := json.Marshal(meshmon.TaskRequest{ID: req.ID, Verb: meshmon.TaskCancel, Site: req.Site, By: req.By})
	if nc.Publish(rt.request(req, meshmon.TaskCancel), b) == nil {
		_ = nc.FlushTimeout(time.Second)
	}
}
