package bus

import (
	"context"
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
// ctl.<site>.<verb> in the tenant's account, which central carries over the
// site's leaf link to the site's pollers; the replies go back to the
// requester's inbox the same way. Device verbs reach every poller of the
// site and only the device's owner answers; site verbs reach one poller of
// the site's queue group.

// SiteInboxPrefix is the inbox prefix of a connection at central that
// reaches a site's JetStream domain across its leaf link ('device
// --site'): the site's link carries back the site's task replies,
// ctl.<site>.reply.>, and no other inbox.
func SiteInboxPrefix(site string) string { return "ctl." + site + ".reply" }

// TaskStarted is the phase of the first reply of every task, which the
// site sends as it takes the task.
const TaskStarted = "started"

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
	running      map[string]context.CancelFunc
}

// Serve subscribes the poller to its site's task subjects and runs each
// task it is to answer with h, until ctx is done; then it stops the tasks
// that run and waits for them.
func (s *TaskServer) Serve(ctx context.Context, site, poller string, h TaskHandler) error {
	sv := &serving{s: s, site: site, poller: poller, h: h, ctx: ctx, running: map[string]context.CancelFunc{}}
	var subs []*nats.Subscription
	defer func() {
		for _, sub := range subs {
			_ = sub.Unsubscribe()
		}
		sv.mu.Lock()
		for _, c := range sv.running {
			c()
		}
		sv.mu.Unlock()
		sv.wg.Wait()
	}()
	for _, v := range []string{meshmon.TaskPollNow, meshmon.TaskWalk, meshmon.TaskCancel} {
		sub, err := s.nc.Subscribe(meshmon.TaskSubject(site, v), sv.handle)
		if err != nil {
			return fmt.Errorf("subscribe to tasks: %w", err)
		}
		subs = append(subs, sub)
	}
	for _, v := range []string{meshmon.TaskPing, meshmon.TaskSNMPGet, meshmon.TaskDiscover, meshmon.TaskWhois} {
		sub, err := s.nc.QueueSubscribe(meshmon.TaskSubject(site, v), TaskQueue, sv.handle)
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

// handle takes one request.
func (sv *serving) handle(m *nats.Msg) {
	var req meshmon.TaskRequest
	if err := json.Unmarshal(m.Data, &req); err != nil || req.Site != sv.site {
		return // not a request of ours: nothing to answer
	}
	switch req.Verb {
	case meshmon.TaskCancel:
		sv.mu.Lock()
		if c := sv.running[req.ID]; c != nil {
			c()
		}
		sv.mu.Unlock()
		return
	case meshmon.TaskWhois:
		owner, known := sv.h.Whois(req.Device)
		sv.reply(req.ID, meshmon.TaskReply{ID: req.ID, Poller: sv.poller, Done: true, Owner: owner, Known: known})
		return
	}
	if meshmon.IsDeviceTask(req.Verb) && !sv.h.Owns(req.Device) {
		// The owner answers. A poller the assignment names but that
		// has not taken the device on yet says so rather than leave
		// the requester waiting.
		if owner, _ := sv.h.Whois(req.Device); owner == sv.poller {
			sv.reply(req.ID, meshmon.TaskReply{ID: req.ID, Poller: sv.poller, Done: true, Code: meshmon.TaskCodeFailed,
				Error: fmt.Sprintf("poller %s is taking device %s on; try again in a moment", sv.poller, req.Device)})
		}
		return
	}
	if err := req.Validate(); err != nil {
		sv.reply(req.ID, meshmon.TaskReply{ID: req.ID, Poller: sv.poller, Done: true, Error: err.Error(), Code: meshmon.TaskCodeFailed})
		return
	}
	timeout := min(time.Duration(req.Timeout), MaxTaskTimeout)
	if timeout <= 0 {
		timeout = MaxTaskTimeout
	}
	ctx, cancel := context.WithTimeout(sv.ctx, timeout)
	sv.mu.Lock()
	busy := len(sv.running) >= MaxConcurrentTasks
	if !busy {
		sv.running[req.ID] = cancel
	}
	sv.mu.Unlock()
	if busy {
		cancel()
		sv.reply(req.ID, meshmon.TaskReply{ID: req.ID, Poller: sv.poller, Done: true, Code: meshmon.TaskCodeFailed,
			Error: fmt.Sprintf("poller %s is busy: %d tasks run already; try again later", sv.poller, MaxConcurrentTasks)})
		return
	}
	sv.wg.Go(func() { sv.run(ctx, cancel, req) })
}

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
		return sv.reply(req.ID, r)
	}
	// An acknowledgement first: the requester knows the site took the
	// task, however long its first result takes.
	err := send(meshmon.TaskReply{Progress: &meshmon.TaskProgress{Phase: TaskStarted}})
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

// reply sends r on the replies subject of task id.
func (sv *serving) reply(id string, r meshmon.TaskReply) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return sv.s.nc.Publish(meshmon.TaskReplySubject(sv.site, id), b)
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
}

// DefaultReach is TaskOptions.Reach's default.
const DefaultReach = 5 * time.Second

// RunTask runs req at its site over nc and waits for its replies until the
// last, req.Timeout, or the end of ctx; when it gives up it asks the site
// to stop the task. It fails with an error wrapping ErrSiteOffline,
// ErrNoOwner, ErrTaskDevice, ErrTaskTimeout, ErrTaskFailed, or ctx's error.
func RunTask(ctx context.Context, nc *nats.Conn, req meshmon.TaskRequest, opt TaskOptions) error {
	if err := req.Validate(); err != nil {
		return err
	}
	if opt.Reach <= 0 {
		opt.Reach = DefaultReach
	}
	if opt.OnReply == nil {
		opt.OnReply = func(meshmon.TaskReply) {}
	}
	if meshmon.IsDeviceTask(req.Verb) {
		if err := whois(ctx, nc, req, opt.Reach); err != nil {
			return err
		}
	}
	replies, stop, err := send(nc, req)
	if err != nil {
		return err
	}
	defer stop()
	err = waitTask(ctx, req, opt, replies)
	if err != nil && !errors.Is(err, ErrTaskFailed) && !errors.Is(err, ErrSiteOffline) {
		cancelTask(nc, req)
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
	}
	return fmt.Errorf("%w: %s at site %s (poller %s): %s", ErrTaskFailed, req.Verb, req.Site, r.Poller, r.Error)
}

// send subscribes to the replies of req and sends it; stop unsubscribes.
func send(nc *nats.Conn, req meshmon.TaskRequest) (<-chan *nats.Msg, func(), error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, nil, err
	}
	replies := make(chan *nats.Msg, 256)
	sub, err := nc.ChanSubscribe(meshmon.TaskReplySubject(req.Site, req.ID), replies)
	if err != nil {
		return nil, nil, fmt.Errorf("task %s: %w", req.Verb, err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	if err := nc.Publish(meshmon.TaskSubject(req.Site, req.Verb), b); err != nil {
		_ = sub.Unsubscribe()
		return nil, nil, fmt.Errorf("task %s: %w", req.Verb, err)
	}
	// A request refused for want of permission fails the flush with the
	// server's error.
	if err := nc.FlushTimeout(DefaultReach); err != nil {
		_ = sub.Unsubscribe()
		return nil, nil, fmt.Errorf("task %s at site %s: %w", req.Verb, req.Site, err)
	}
	if err := nc.LastError(); err != nil && strings.Contains(err.Error(), "Permissions Violation") {
		_ = sub.Unsubscribe()
		return nil, nil, fmt.Errorf("task %s at site %s: %w", req.Verb, req.Site, err)
	}
	return replies, func() { _ = sub.Unsubscribe() }, nil
}

// whois asks any poller of the site who owns the device.
func whois(ctx context.Context, nc *nats.Conn, req meshmon.TaskRequest, reach time.Duration) error {
	q := meshmon.TaskRequest{ID: req.ID + "-whois", Verb: meshmon.TaskWhois, Site: req.Site, Device: req.Device, By: req.By}
	replies, stop, err := send(nc, q)
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
func cancelTask(nc *nats.Conn, req meshmon.TaskRequest) {
	b, _ := json.Marshal(meshmon.TaskRequest{ID: req.ID, Verb: meshmon.TaskCancel, Site: req.Site, By: req.By})
	if nc.Publish(meshmon.TaskSubject(req.Site, meshmon.TaskCancel), b) == nil {
		_ = nc.FlushTimeout(time.Second)
	}
}
