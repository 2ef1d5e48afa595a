package bus

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nuid"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/internal/eventually"
)

// siteView is a poller's view of its site for the task server: it owns
// the devices in owned; walks run until their ctx ends.
type siteView struct {
	name    string
	owned   map[string]bool
	owners  map[string]string // the site's devices and their owners
	ran     atomic.Int32
	walking chan struct{} // a walk started
	stopped atomic.Int32  // walks whose ctx ended
	stopWhy atomic.Value
}

func (v *siteView) Owns(d string) bool { return v.owned[d] }
func (v *siteView) Whois(d string) (string, bool) {
	o, ok := v.owners[d]
	return o, ok
}
func (v *siteView) Task(ctx context.Context, req meshmon.TaskRequest, send func(meshmon.TaskReply) error) error {
	v.ran.Add(1)
	if req.Verb == meshmon.TaskWalk {
		v.walking <- struct{}{}
		<-ctx.Done()
		v.stopWhy.Store(fmt.Errorf("stopped: %w", ctx.Err())) // one concrete type
		v.stopped.Add(1)
		return ctx.Err()
	}
	return send(meshmon.TaskReply{Varbinds: []meshmon.Varbind{{OID: "1.3", Value: v.name}}})
}

func code(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return meshmon.TaskCodeTimeout
	case errors.Is(err, context.Canceled):
		return meshmon.TaskCodeCancelled
	}
	return meshmon.TaskCodeFailed
}

// TestTaskRouting: the owner answers a device task and the other poller
// stays silent; the errors name an unknown device, a device nobody owns
// and a site nobody answers for; a task's timeout and its requester's
// cancel stop it at the site.
func TestTaskRouting(t *testing.T) {
	ts, nc, _ := runJS(t)
	ctx := testCtx(t)
	owners := map[string]string{"sw1": "p1", "orphan": ""}
	p1 := &siteView{name: "p1", owned: map[string]bool{"sw1": true}, owners: owners, walking: make(chan struct{}, 2)}
	p2 := &siteView{name: "p2", owned: map[string]bool{}, owners: owners, walking: make(chan struct{}, 2)}
	for _, v := range []*siteView{p1, p2} {
		pnc, _ := connect(t, ts.srv.ClientURL())
		srv := NewTaskServer(pnc, code, nil)
		sctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = srv.Serve(sctx, "hq", v.name, v) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	req := func(verb, device string, timeout time.Duration) meshmon.TaskRequest {
		return meshmon.TaskRequest{ID: nuid.Next(), Verb: verb, Site: "hq", Device: device, OIDs: []string{"1.3"}, Timeout: meshmon.Duration(timeout)}
	}
	var replies []meshmon.TaskReply
	eventually.NoError(t, 10*time.Second, "poll-now of sw1", func() error {
		replies = nil
		return RunTask(ctx, nc, req(meshmon.TaskPollNow, "sw1", 5*time.Second), TaskOptions{Reach: time.Second,
			OnReply: func(r meshmon.TaskReply) { replies = append(replies, r) }})
	})
	if len(replies) != 3 || replies[1].Poller != "p1" || replies[1].Varbinds[0].Value != "p1" || !replies[2].Done {
		t.Fatalf("poll-now of sw1: %+v", replies)
	}
	if p2.ran.Load() != 0 {
		t.Fatal("p2, which does not own sw1, ran its task")
	}

	for _, c := range []struct {
		device string
		want   error
	}{{"nope", ErrTaskDevice}, {"orphan", ErrNoOwner}} {
		if err := RunTask(ctx, nc, req(meshmon.TaskPollNow, c.device, 5*time.Second), TaskOptions{Reach: time.Second}); !errors.Is(err, c.want) {
			t.Errorf("poll-now of %s: %v, want %v", c.device, err, c.want)
		}
	}
	offline := req(meshmon.TaskPing, "", 5*time.Second)
	offline.Site, offline.Address = "lyon", "192.0.2.1"
	if err := RunTask(ctx, nc, offline, TaskOptions{Reach: 500 * time.Millisecond}); !errors.Is(err, ErrSiteOffline) || err.Error() != "site offline: site lyon is offline (no reply in 500ms)" {
		t.Errorf("ping at a site nobody serves: %v", err)
	}

	// The task's timeout: the site stops it and says so.
	if err := RunTask(ctx, nc, req(meshmon.TaskWalk, "sw1", time.Second), TaskOptions{Reach: time.Second}); !errors.Is(err, ErrTaskTimeout) {
		t.Errorf("a walk past its timeout: %v, want %v", err, ErrTaskTimeout)
	}
	eventually.True(t, 10*time.Second, "the timed-out walk to stop at the site", func() bool { return p1.stopped.Load() == 1 })
	if why, _ := p1.stopWhy.Load().(error); !errors.Is(why, context.DeadlineExceeded) {
		t.Errorf("the walk stopped with %v, want its deadline", why)
	}
	// The requester gives up: the site stops the task.
	cctx, cancel := context.WithCancel(ctx)
	<-p1.walking // the timed-out one
	go func() { <-p1.walking; cancel() }()
	if err := RunTask(cctx, nc, req(meshmon.TaskWalk, "sw1", time.Minute), TaskOptions{Reach: 5 * time.Second}); !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled walk: %v", err)
	}
	eventually.True(t, 10*time.Second, "the cancelled walk to stop at the site", func() bool { return p1.stopped.Load() == 2 })
	if why, _ := p1.stopWhy.Load().(error); !errors.Is(why, context.Canceled) {
		t.Errorf("the walk stopped with %v, want a cancel", why)
	}
}
