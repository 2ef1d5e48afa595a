package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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
	if err := s.nc.FlushWithContext(ctx); err != nil && ctx.Err() == nil {
		return fmt.Errorf("subscribe to tasks: %w", err)
	}
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
		sv.reply(m.Reply, meshmon.TaskReply{ID: req.ID, Poller: sv.poller, Done: true, Owner: owner, Known: known})
		return
	}
	if meshmon.IsDeviceTask(req.Verb) && !sv.h.Owns(req.Device) {
		return // the owner answers
	}
	if m.Reply == "" {
		return
	}
	if err := req.Validate(); err != nil {
		sv.reply(m.Reply, meshmon.TaskReply{ID: req.ID, Poller: sv.poller, Done: true, Error: err.Error(), Code: meshmon.TaskCodeFailed})
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
		sv.reply(m.Reply, meshmon.TaskReply{ID: req.ID, Poller: sv.poller, Done: true, Code: meshmon.TaskCodeFailed,
			Error: fmt.Sprintf("poller %s is busy: %d tasks run already; try again later", sv.poller, MaxConcurrentTasks)})
		return
	}
	sv.wg.Go(func() { sv.run(ctx, cancel, req, m.Reply) })
}

// run runs one task and sends its replies, the last with Done.
func (sv *serving) run(ctx context.Context, cancel context.CancelFunc, req meshmon.TaskRequest, reply string) {
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
		return sv.reply(reply, r)
	}
	err := sv.h.Task(ctx, req, send)
	final := meshmon.TaskReply{Done: true}
	if err != nil {
		final.Error, final.Code = err.Error(), sv.s.code(err)
	}
	_ = send(final)
	sv.s.log.Info("task", "id", req.ID, "verb", req.Verb, "by", req.By, "target", req.Target(), "err", err)
}

func (sv *serving) reply(subject string, r meshmon.TaskReply) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return sv.s.nc.Publish(subject, b)
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
	inbox := nc.NewInbox()
	replies := make(chan *nats.Msg, 256)
	sub, err := nc.ChanSubscribe(inbox, replies)
	if err != nil {
		return fmt.Errorf("task %s: %w", req.Verb, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	_ = sub.SetPendingLimits(-1, -1)
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	if err := nc.PublishRequest(meshmon.TaskSubject(req.Site, req.Verb), inbox, b); err != nil {
		return fmt.Errorf("task %s: %w", req.Verb, err)
	}
	err = waitTask(ctx, req, opt, replies)
	if err != nil && !errors.Is(err, ErrTaskFailed) && !errors.Is(err, ErrSiteOffline) {
		cancelTask(nc, req)
	}
	return err
}

// waitTask reads the replies of req until the last.
func waitTask(ctx context.Context, req meshmon.TaskRequest, opt TaskOptions, replies <-chan *nats.Msg) error {
	deadline := time.Now().Add(time.Duration(req.Timeout))
	if req.Timeout <= 0 {
		deadline = time.Now().Add(MaxTaskTimeout)
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
			return fmt.Errorf("%w: task %s at site %s did not finish in %s", ErrTaskTimeout, req.Verb, req.Site, time.Duration(req.Timeout))
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

// whois asks any poller of the site who owns the device.
func whois(ctx context.Context, nc *nats.Conn, req meshmon.TaskRequest, reach time.Duration) error {
	q := meshmon.TaskRequest{ID: req.ID, Verb: meshmon.TaskWhois, Site: req.Site, Device: req.Device, By: req.By}
	b, err := json.Marshal(q)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, reach)
	defer cancel()
	m, err := nc.RequestWithContext(rctx, meshmon.TaskSubject(req.Site, meshmon.TaskWhois), b)
	switch {
	case err != nil && ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("%w: site %s is offline (no poller of it is reachable)", ErrSiteOffline, req.Site)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return fmt.Errorf("%w: site %s is offline (no reply in %s)", ErrSiteOffline, req.Site, reach)
	case err != nil:
		return fmt.Errorf("task %s: ask site %s who owns %s: %w", req.Verb, req.Site, req.Device, err)
	}
	var r meshmon.TaskReply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return fmt.Errorf("task %s: site %s answered who owns %s with %q: %w", req.Verb, req.Site, req.Device, m.Data, err)
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
